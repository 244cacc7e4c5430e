"""The `harness` command: help, clear errors without tracebacks, config inspection."""

import subprocess
import sys

import yaml


def harness(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


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
