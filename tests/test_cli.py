"""The `harness` command: help, clear errors without tracebacks, config inspection."""

import subprocess
import sys

import pytest
import yaml

from configs import tiny_config, write_config


def harness(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


# Two neurons of layer 3 on 100 corpus samples, six examples shown to the explainer.
CLI_CONFIG = {"corpus.num_samples": 100, "site.features": [77, 91], "explain.selection.num_examples": 6}


def test_help_lists_every_stage_command():
    result = harness("--help")
    assert result.returncode == 0
    for command in ("run", "search", "compare", "leaderboard", "activations", "explain", "evaluate", "llm", "model"):
        assert command in result.stdout


def test_bad_config_is_one_clear_line_without_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("site:\n  module: model.layers.3.mlp.act_fn\n  kindd: neuron\n")
    result = harness("run", str(path))
    assert result.returncode == 2
    assert "site.kindd: unknown key" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_fills_defaults_and_applies_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    result = harness("config", "show", str(path), "--set", "fade.num_samples=42", "--set", "site.features=[1, 2]")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["name"] == "x" and shown["fade"]["num_samples"] == 42 and shown["site"]["features"] == [1, 2]
    assert shown["fade"]["rating_batch_size"] == 15


def test_bad_override_is_a_clear_error():
    result = harness("config", "show", "--set", "fade.num_samples")
    assert result.returncode == 2 and "--set expects KEY=VALUE" in result.stderr


@pytest.mark.slow
def test_evaluate_scores_a_descriptions_file_with_fade_and_the_enabled_scorers(tmp_path):
    """`harness explain` then `harness evaluate` with the scripted loopback server as explainer and rater:
    FADE's table and the enabled scorers' table come out for every feature, printed side by side; run
    again, FADE's results are reused and the scorers' answers come from the LLM cache, unchanged."""
    import pandas as pd

    from harness.testing.loopback import LoopbackServer

    with LoopbackServer() as server:
        scorers = {"enabled": ["detection", "embedding"], "detection": {"num_examples": 10}}
        settings = {**CLI_CONFIG, "fade.num_samples": 30, "scorers": scorers}
        path = write_config(tmp_path, tiny_config(tmp_path, server.url, settings))
        explained = harness("explain", str(path), "-o", str(tmp_path / "descriptions.csv"), "--quiet", cwd=tmp_path)
        assert explained.returncode == 0, explained.stderr
        command = (
            "evaluate",
            str(path),
            "-d",
            str(tmp_path / "descriptions.csv"),
            "-o",
            str(tmp_path / "out"),
            "--quiet",
        )
        first = harness(*command, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        other = pd.read_csv(tmp_path / "out" / "other_scores.csv")
        requests = server.requests
        again = harness(*command, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert server.requests == requests  # FADE reused from the output folder, scorers from the LLM cache
    assert first.stdout.splitlines()[0].split() == [
        "feature",
        "clarity",
        "responsiveness",
        "purity",
        "faithfulness",
        "detection",
        "embedding",
        "description",
    ]
    assert "2 computed, 0 reused" in first.stdout and "0 computed, 2 reused" in again.stdout
    assert list(other["feature"]) == [77, 91]
    assert other["detection"].between(0, 1).all() and other["embedding"].between(0, 1).all()
    assert other["detection_reason"].isna().all() and other["detection_judged"].between(1, 10).all()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "other_scores.csv"), other)


@pytest.mark.slow
def test_explain_never_writes_an_empty_description_and_fails_unless_asked_to_keep_going(tmp_path):
    """An unreachable explainer backend is an error naming it; a feature whose call fails is counted, left out
    of the table, and makes the command fail unless --keep-going."""
    import socket

    import pandas as pd

    from harness.testing.loopback import FaultPlan, LoopbackServer

    def explain(api_base: str, *flags: str):
        path = write_config(tmp_path, tiny_config(tmp_path, api_base, CLI_CONFIG))
        return harness("explain", str(path), "-o", str(output), "--quiet", *flags, cwd=tmp_path)

    output = tmp_path / "descriptions.csv"
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = explain(f"http://127.0.0.1:{port}/v1")
    assert unreachable.returncode == 2 and f"127.0.0.1:{port}" in unreachable.stderr, unreachable.stderr
    assert "Traceback" not in unreachable.stderr and not output.exists()
    for flags, code in (((), 1), (("--keep-going",), 0)):
        # a fresh server refuses the first call it gets: the feature that failed before (the other's is cached)
        with LoopbackServer(faults=FaultPlan(sequence=("auth_error",))) as server:
            result = explain(server.url, *flags)
        assert result.returncode == code, result.stderr
        assert "1 of 2 features got no description" in result.stderr and "HTTP 401" in result.stderr
        table = pd.read_csv(output)
        assert len(table) == 1 and table["description"].notna().all() and (table["description"].str.strip() != "").all()


@pytest.mark.parametrize("command", [["compare", "demo"], ["leaderboard", "build", "--experiment", "demo", "--quiet"]])
def test_reading_a_store_that_is_not_there_does_not_create_one(tmp_path, command, capsys):
    from harness.cli import main

    missing = tmp_path / "no-store"
    assert main([*command, "--store-dir", str(missing)]) == 2
    assert "no tracking store" in capsys.readouterr().err
    assert not missing.exists()


def test_an_import_warning_is_one_line_without_python_source(tmp_path):
    descriptions = tmp_path / "descriptions.csv"
    descriptions.write_text("feature,description\n1,first\n1,again\n2,second\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": str(tmp_path / "no-such-model")}}))
    result = harness("evaluate", str(config), "-d", str(descriptions), "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    [start] = [index for index, line in enumerate(lines) if line.startswith("warning: ")]
    assert "kept 2 of 3 rows" in lines[start] and "already given at line 2" in lines[start + 1], result.stderr
    assert "Warning:" not in result.stderr and "import_descriptions(" not in result.stderr  # no Python source line
