"""Bad inputs fail before any MLflow run exists; a run that fails anyway says why; rankings leave failed
runs out and say how many (issue #18, item 4). Real model, real sqlite store, the loopback server."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from configs import tiny_config
from harness.artifacts import ERROR_FILE
from harness.cli import main
from harness.config import parse_config
from harness.errors import HarnessError
from harness.testing.loopback import FaultPlan
from harness.track.compare import count_failed_runs, variants_table
from harness.track.experiment import run_experiment
from harness.track.runs import ERROR_TAG

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("own_store")]


def _config(folder: Path, server_url: str, **overrides):
    return parse_config(
        tiny_config(folder, server_url, {key.replace("__", "."): value for key, value in overrides.items()})
    )


def _runs(folder: Path):
    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("probe")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _unreadable_cache(folder: Path) -> str:
    path = folder / "garbage.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    return str(path)


PROBES = {
    "module path": ({"site__module": "model.layers.99.mlp.act_fn"}, "model.layers.99"),
    "feature range": ({"site__features": [5, 999999]}, "out of range"),
    "corpus": ({"corpus__source": "missing-corpus.jsonl"}, "missing-corpus.jsonl"),
    "template": ({"explain__prompt__template": "no-such-template"}, "no-such-template"),
    "scorer name": ({"scorers__enabled": ["detektion"]}, "detektion"),
    "LLM cache": ({"fade__rater__cache_path": _unreadable_cache}, "garbage.sqlite"),
    "second variant": (
        {"variants__grid": {"site.module": ["model.layers.3.mlp.act_fn", "model.layers.99.mlp"]}},
        "model.layers.99",
    ),
}


@pytest.mark.parametrize("probe", PROBES)
def test_a_bad_input_fails_before_any_run_is_created(tmp_path, server, monkeypatch, probe):
    monkeypatch.chdir(tmp_path)
    overrides, expected = PROBES[probe]
    overrides = {key: value(tmp_path) if callable(value) else value for key, value in overrides.items()}
    with pytest.raises(HarnessError, match=expected):
        run_experiment(_config(tmp_path, server.url, **overrides), progress=False)
    assert _runs(tmp_path) == []


def test_a_failed_run_says_why_and_rankings_leave_it_out_saying_how_many(tmp_path, server, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_experiment(_config(tmp_path, server.url), progress=False)
    server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))  # the backend refuses every call of the next variant
    try:
        with pytest.raises(HarnessError):
            run_experiment(_config(tmp_path, server.url, explain__llm__temperature=0.5), progress=False)
    finally:
        server.faults = FaultPlan()
    [failed] = [run for run in _runs(tmp_path) if run.info.status != "FINISHED"]
    assert failed.info.status == "FAILED"
    reason = failed.data.tags[ERROR_TAG]
    assert "HTTP 401" in reason
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert reason in Path(client.download_artifacts(failed.info.run_id, ERROR_FILE, str(tmp_path))).read_text()
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    assert len(variants_table(["probe"], uri)) == 1
    assert count_failed_runs(["probe"], uri) == 1
    capsys.readouterr()
    assert main(["compare", "probe", "--tracking-uri", uri]) == 0
    assert "1 failed run left out" in capsys.readouterr().out
    assert (
        main(
            [
                "leaderboard",
                "build",
                "--experiment",
                "probe",
                "--tracking-uri",
                uri,
                "--output",
                str(tmp_path / "site"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "1 failed run left out" in capsys.readouterr().out
