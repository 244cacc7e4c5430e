"""A rater outage is never a finished result (issue #30): the loopback server fails every request from the
Nth on; `harness run` ends FAILED with the features' scores `llm_failed` (never a data reason), and a
rerun against the healthy server recomputes exactly the failed features and finishes with real scores.
With --keep-going the run finishes marked partial and the next run resumes it. Real model, real sqlite
store, real loopback server through litellm."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from harness.cli import main
from harness.evaluate.fade.results import RESULT_FILE
from harness.score_names import FADE_SCORES, Reason
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.track.runs import ERROR_TAG, PARTIAL_TAG

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("own_store")]

HEALTHY_REQUESTS = 2  # the explainer's two calls (and whatever FADE asks first) are answered, then 500s


def _write_config(folder: Path, server_url: str) -> Path:
    llm = {"model": "openai/scripted", "api_base": server_url, "max_retries": 1, "backoff_base_s": 0.01}
    config = {
        "corpus": {"num_samples": 60, "max_chars": 160, "seed": 5},
        "site": {"module": "model.layers.3.mlp.act_fn", "features": [5, 77]},
        "activations": {"batch_size": 16, "max_length": 32, "skip_first_positions": 1, "cache_dir": "cache"},
        "explain": {"llm": llm, "selection": {"num_examples": 4}},
        "fade": {"rater": llm, "clarity_llm_calls": 2, "num_samples": 20, "faithfulness": {"enabled": False}},
        "tracking": {"experiment": "outage", "store_dir": "mlruns", "bootstrap_samples": 100},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start_outage(server: LoopbackServer, healthy: int) -> None:
    """From now on the server answers `healthy` requests, then HTTP 500 to every one (retries included)."""
    server.reset_counts()
    server.faults = FaultPlan(sequence=(None,) * healthy, rate=1.0, kinds=("server_error",))


def _variant_runs(folder: Path):
    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("outage")
    return client, client.search_runs([experiment.experiment_id])


def _per_feature(client: MlflowClient, run_id: str, folder: Path) -> pd.DataFrame:
    path = client.download_artifacts(run_id, "tables/per_feature.json", str(folder / f"download-{run_id}"))
    table = json.loads(Path(path).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


def _results(folder: Path) -> dict[int, dict]:
    return {
        int(path.parent.name): json.loads(path.read_text())
        for path in (folder / "cache" / "runs").glob(f"*/fade/features/*/{RESULT_FILE}")
    }


DATA_REASONS = {reason.value for reason in Reason} - {Reason.LLM_FAILED.value, Reason.FAITHFULNESS_DISABLED.value}


def test_an_outage_mid_run_fails_the_run_and_a_rerun_recomputes_only_the_failed_features(
    tmp_path, server, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    config = str(_write_config(tmp_path, server.url))
    _start_outage(server, HEALTHY_REQUESTS + 6)
    try:
        assert main(["run", config, "--quiet"]) == 2
    finally:
        server.faults = FaultPlan()
    err = capsys.readouterr().err
    assert "error: LLM calls failed for good on" in err and Reason.LLM_FAILED in err and "HTTP 500" in err
    assert "Traceback" not in err
    client, [run] = _variant_runs(tmp_path)
    assert run.info.status == "FAILED" and "llm_failed" in run.data.tags[ERROR_TAG]
    table = _per_feature(client, run.info.run_id, tmp_path)
    failed = sorted(table.loc[table["llm_failures"] > 0, "feature"].astype(int))
    assert failed, "the outage hit no feature: raise the fault plan's share"
    for row in table.itertuples():
        reasons = {getattr(row, f"{score}_reason") for score in FADE_SCORES} - {None}
        # a feature whose calls failed says so; no failure is passed off as a fact about the data
        assert (Reason.LLM_FAILED in reasons) == (row.feature in failed), row
        if row.feature in failed:
            assert not reasons & DATA_REASONS and "HTTP 500" in row.llm_error
    stored = _results(tmp_path)
    kept = {feature: result for feature, result in stored.items() if feature not in failed}
    assert all(stored[feature]["llm_failures"] > 0 for feature in failed)

    # The healthy server: the same command resumes the run and computes the failed features only.
    before = server.requests
    assert main(["run", config, "--quiet"]) == 0
    assert "resumed and finished" in capsys.readouterr().out
    assert server.requests > before
    _, [again] = _variant_runs(tmp_path)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert ERROR_TAG not in again.data.tags and again.data.metrics["features_llm_failed"] == 0
    rerun = _results(tmp_path)
    assert {feature: rerun[feature] for feature in kept} == kept  # finished features were reused as they were
    assert all(rerun[feature]["llm_failures"] == 0 for feature in failed)
    final = _per_feature(client, run.info.run_id, tmp_path)
    assert not (final[[f"{score}_reason" for score in FADE_SCORES]] == Reason.LLM_FAILED).any().any()
    assert final["clarity"].notna().all()  # real scores

    # And once more: finished, so skipped, and no call made.
    before = server.requests
    assert main(["run", config, "--quiet"]) == 0
    assert "skipped (already finished" in capsys.readouterr().out and server.requests == before


def test_keep_going_finishes_the_run_marked_partial_and_the_next_run_resumes_it(tmp_path, server, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = str(_write_config(tmp_path, server.url))
    _start_outage(server, HEALTHY_REQUESTS + 6)
    try:
        assert main(["run", config, "--quiet", "--keep-going"]) == 0
    finally:
        server.faults = FaultPlan()
    out = capsys.readouterr().out
    assert "PARTIAL: LLM calls failed on features" in out
    assert "(partial)" in out  # the ranked table marks it, as harness compare and the leaderboard do
    _, [run] = _variant_runs(tmp_path)
    assert run.info.status == "FINISHED" and Reason.LLM_FAILED in run.data.tags[PARTIAL_TAG]
    assert run.data.metrics["features_llm_failed"] >= 1
    assert main(["run", config, "--quiet"]) == 0
    assert "resumed and finished" in capsys.readouterr().out
    _, [again] = _variant_runs(tmp_path)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert PARTIAL_TAG not in again.data.tags and again.data.metrics["features_llm_failed"] == 0
