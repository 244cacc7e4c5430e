"""Optuna search end to end on the loopback server: known answer, cooperating workers, dead trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

import configs
from configs import tiny_config
from harness.artifacts import SCORER_AGREEMENT_TABLE
from harness.config import load_config
from harness.search.study import FAIL_REASON_ATTR, HOST_ATTR, PID_ATTR, fail_dead_trials, make_storage, run_search
from harness.track.agreement import rank_correlations
from harness.track.compare import load_comparison

KEY_ENV = "HARNESS_TEST_SEARCH_KEY"


def write_config(folder: Path, server_url: str, search: dict) -> Path:
    data = tiny_config(
        folder,
        server_url,
        {
            "name": "search-test",
            "llm": {"model": "openai/scripted", "api_base": server_url, "api_key_env": KEY_ENV, "backoff_base_s": 0.01},
            "corpus.num_samples": 100,
            "explain.selection.num_examples": 6,
            "fade.num_samples": 30,
            "tracking.experiment": "search",
            "search": search,
        },
    )
    return configs.write_config(folder, data)


@pytest.mark.slow
def test_search_finds_the_setting_that_yields_true_descriptions(tmp_path, server, monkeypatch):
    # The scripted explainer names the feature's top token only when tokens are highlighted; with numeric
    # values it answers boilerplate, which the rater finds nowhere: only display=highlight scores well.
    space = {
        "explain.display.mode": {"choices": ["values", "highlight"]},
        "explain.prompt.template": {"choices": ["plain", "delphi"]},
    }
    config = load_config(write_config(tmp_path, server.url, {"n_trials": 5, "chunk_size": 1, "space": space}))
    monkeypatch.setenv(KEY_ENV, "dummy")
    monkeypatch.chdir(tmp_path)
    outcome = run_search(config, progress=False)
    assert len(outcome.best) == 1
    best = outcome.best[0]
    assert best["params"]["explain.display.mode"] == "highlight"
    run = MlflowClient(mlflow.get_tracking_uri()).get_run(best["run_id"])
    assert run.data.params["explain.display.mode"] == "highlight"
    assert run.data.params["explain.prompt.template"] == best["params"]["explain.prompt.template"]
    assert run.data.tags["harness.best_trial"] == "true" and run.data.tags["harness.role"] == "trial"
    assert run.data.tags["mlflow.parentRunId"] == outcome.parent_run_id
    assert run.data.metrics["objective"] == pytest.approx(best["values"][0])
    # The objective is the aggregate the rankings show: every finished trial's equals its run's in a ranking.
    comparison = load_comparison(["search"], mlflow.get_tracking_uri())
    ranked = comparison.ranked("aggregate").set_index("run_id")
    finished = ranked[ranked["tag:harness.role"] == "trial"]
    assert len(finished) == outcome.trials_finished
    for run_id, row in finished.iterrows():
        objective = MlflowClient(mlflow.get_tracking_uri()).get_run(run_id).data.metrics["objective"]
        assert row["aggregate_mean"] == pytest.approx(objective)
    parent = MlflowClient(mlflow.get_tracking_uri()).list_artifacts(outcome.parent_run_id, "plots/study")
    assert "plots/study/optimization_history.png" in {item.path for item in parent}
    # the agreement between scorers across the completed trials, as the trial runs read back give it
    client = MlflowClient(mlflow.get_tracking_uri())
    trials = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{outcome.parent_run_id}'")
    completed = [trial.data.metrics for trial in trials if trial.info.status == "FINISHED"]
    assert len(completed) == outcome.trials_finished
    expected = rank_correlations(pd.DataFrame(completed))
    logged = json.loads(Path(client.download_artifacts(outcome.parent_run_id, SCORER_AGREEMENT_TABLE)).read_text())
    assert [row[:2] + row[3:] for row in logged["data"]] == [
        [p.first, p.second, p.variants, p.reason] for p in expected.pairs
    ]


@pytest.mark.slow
def test_two_workers_share_one_study_without_losing_or_duplicating_trials(tmp_path, server):
    space = {"explain.selection.num_examples": {"low": 3, "high": 9, "step": 3}}
    search = {"n_trials": 2, "pruner": "none", "sampler": "random", "space": space}
    config_path = write_config(tmp_path, server.url, search)
    env = {**os.environ, KEY_ENV: "dummy", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # Both workers start at once on a fresh store and a cold activation cache.
    command = [sys.executable, "-m", "harness", "search", str(config_path), "--quiet"]
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr.decode()[-3000:]
    study = optuna.load_study(
        study_name="search-test", storage=make_storage(str(tmp_path / "mlruns" / "optuna-journal.log"))
    )
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("search")
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'trial'")
    assert len(runs) == 4
    assert sorted(run.data.metrics["trial_number"] for run in runs) == [0, 1, 2, 3]
    assert {trial.user_attrs["mlflow_run_id"] for trial in study.trials} == {run.info.run_id for run in runs}
    studies = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'study'")
    assert len(studies) == 1


def test_a_trial_whose_process_died_is_marked_failed(tmp_path):
    storage = make_storage(str(tmp_path / "journal.log"))
    study = optuna.create_study(study_name="s", storage=storage)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan, alive = study.ask(), study.ask()
    orphan.set_user_attr(HOST_ATTR, os.uname().nodename)
    orphan.set_user_attr(PID_ATTR, int(dead.stdout))
    alive.set_user_attr(HOST_ATTR, os.uname().nodename)
    alive.set_user_attr(PID_ATTR, os.getpid())
    assert fail_dead_trials(study) == [orphan.number]
    states = {trial.number: trial.state for trial in study.trials}
    assert states == {orphan.number: optuna.trial.TrialState.FAIL, alive.number: optuna.trial.TrialState.RUNNING}
    assert "died during the trial" in study.trials[orphan.number].user_attrs[FAIL_REASON_ATTR]


def test_a_bad_space_fails_before_any_trial(tmp_path, server):
    config_path = write_config(tmp_path, server.url, {"space": {"explain.selection.num_exampels": {"choices": [3]}}})
    result = subprocess.run(
        [sys.executable, "-m", "harness", "search", str(config_path)], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "search.space.explain.selection.num_exampels: unknown setting" in result.stderr
    assert not (tmp_path / "mlruns" / "optuna-journal.log").exists()
