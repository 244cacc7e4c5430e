"""`harness run` under `accelerate launch` with two CPU processes (gloo): the main process tracks, both compute
their share of the activation pass and of FADE's features; the tracked scores equal a one-process run's, the
store holds one run per variant (none from the other process), and a killed launch resumes into the same runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch
from launching import accelerate_launch, kill_midway, launch_environment
from mlflow import MlflowClient

from configs import tiny_config, write_config
from harness.config import load_config
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.track.compare import feature_scores
from harness.track.experiment import run_experiment
from harness.track.runs import ROLE_TAG
from harness.track.store import default_tracking_uri

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(torch.cuda.is_available(), reason="two processes on one GPU; this check runs on CPU over gloo"),
]

KEY_ENV = "HARNESS_TEST_TWO_PROCESS_KEY"
FEATURES = [5, 77, 300, 512, 1000, 1400]
FADE_COLUMNS = ["feature", "clarity", "responsiveness", "purity", "faithfulness"]


def _config(folder: Path, server_url: str) -> Path:
    data = tiny_config(
        folder,
        server_url,
        {
            "name": "two-processes",
            "llm": {"model": "openai/scripted", "api_base": server_url, "api_key_env": KEY_ENV, "backoff_base_s": 0.01},
            "corpus.seed": 3,
            "site.features": FEATURES,
            "explain.selection.num_examples": 5,
            # gini_threshold 0: every feature is steered, so each process has steering and rating to do.
            "fade.num_samples": 24,
            "fade.gini_threshold": 0.0,
            "fade.faithfulness": {"num_samples": 3, "generation_length": 4, "modification_factors": [0, 10]},
            "scorers": {"enabled": ["detection"], "detection": {"num_examples": 6}},  # the main process's alone
            "tracking.experiment": "split",
            "tracking.plot_features": 0,
            "variants": {"grid": {"explain.prompt.template": ["plain", "delphi"]}},
        },
    )
    return write_config(folder, data)


def _per_feature(store: Path) -> dict[str, pd.DataFrame]:
    """Each variant run's per-feature scores, by run name (the comparison run has none)."""
    uri = default_tracking_uri(store)
    client = MlflowClient(uri)
    [experiment] = client.search_experiments(filter_string="name = 'split'")
    runs = [run for run in client.search_runs([experiment.experiment_id]) if run.data.tags.get(ROLE_TAG) == "variant"]
    names = [run.info.run_name for run in runs]
    assert len(names) == len(set(names)), f"a variant has two runs: {names}"
    assert all(run.info.status == "FINISHED" for run in runs)
    tables = feature_scores([run.info.run_id for run in runs], uri)
    return {run.info.run_name: tables[run.info.run_id].sort_values("feature").reset_index(drop=True) for run in runs}


def test_two_processes_track_what_one_does_and_a_killed_launch_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with LoopbackServer() as server:
        monkeypatch.chdir(tmp_path / "one")
        one = run_experiment(load_config(_config(tmp_path / "one", server.url)), progress=False)
        config_two = _config(tmp_path / "two", server.url)
        command = ("run", str(config_two), "--quiet")
        results = tmp_path / "two" / "cache" / "runs"
        server.faults = FaultPlan(latency_s=0.1)  # slow answers, so the kill lands midway through FADE
        try:
            kill_midway(accelerate_launch(*command), lambda: any(results.glob("*/fade/features/*/result.json")),
                        timeout_s=500, cwd=tmp_path / "two")  # fmt: skip
        finally:
            server.faults = FaultPlan()
        finished_before = len(list(results.glob("*/fade/features/*/result.json")))
        assert 0 < finished_before < 2 * len(FEATURES)

        rerun = subprocess.run(
            accelerate_launch(*command), cwd=tmp_path / "two", env=launch_environment(), capture_output=True,
            text=True, timeout=900,
        )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("resumed and finished") == 1, rerun.stdout[-1500:]  # the killed variant, into its run
    tracked_one, tracked_two = _per_feature(tmp_path / "one" / "mlruns"), _per_feature(tmp_path / "two" / "mlruns")
    assert sorted(tracked_two) == sorted(tracked_one) == sorted(outcome.name for outcome in one)
    for name, table in tracked_one.items():
        # FADE from both processes' shares; detection, the main process's alone, on every feature
        pd.testing.assert_frame_equal(
            tracked_two[name][[*FADE_COLUMNS, "detection"]], table[[*FADE_COLUMNS, "detection"]]
        )
        assert table["faithfulness"].notna().any() and table["detection"].notna().any()  # steering and the scorer ran
