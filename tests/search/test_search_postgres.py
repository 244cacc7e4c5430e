"""A study across machines on a real PostgreSQL: Optuna's RDB storage and an MLflow tracking server on it.

Two `harness search` workers run as separate processes with separate working folders and caches (two
"machines" that share only the database and the tracking server); a killed worker's trial is failed by
heartbeats. `.ci/run` installs PostgreSQL; in CI a missing server fails these tests instead of skipping them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient
from mlflow_server import mlflow_server
from postgres_server import postgres_server
from test_search_study import KEY_ENV, write_config

from harness.artifacts import PAIRED_COMPARISONS_TABLE
from harness.search.study import RUN_ID_ATTR, make_storage
from harness.testing.loopback import FaultPlan, LoopbackServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL with two databases (Optuna's, MLflow's), an MLflow server on it and a loopback LLM."""
    folder = tmp_path_factory.mktemp("team")
    with postgres_server() as postgres:
        optuna_url, mlflow_url = postgres.create_database("optuna"), postgres.create_database("mlflow")
        artifacts = folder / "artifacts"
        artifacts.mkdir()
        with mlflow_server(mlflow_url, folder, "--artifacts-destination", str(artifacts), startup_timeout_s=240) as url:
            with LoopbackServer() as llm:
                yield {"optuna": optuna_url, "mlflow": url, "llm": llm}


def _machine(folder: Path, team: dict, search: dict) -> Path:
    """One machine's config: its own working folder and caches, the team's study storage and tracking server."""
    folder.mkdir(parents=True)
    path = write_config(folder, team["llm"].url, {**search, "storage": team["optuna"]})
    config = yaml.safe_load(path.read_text())
    config["tracking"]["uri"] = team["mlflow"]
    path.write_text(yaml.safe_dump(config))
    return path


def _worker(config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, KEY_ENV: "dummy", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "harness", *args, str(config), "--quiet"]
    return subprocess.Popen(
        command, cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def test_two_machines_share_one_study_and_one_tracking_server_on_postgresql(team, tmp_path):
    space = {"explain.selection.num_examples": {"low": 3, "high": 9, "step": 3}}
    search = {"n_trials": 2, "pruner": "none", "sampler": "random", "space": space, "study_name": "shared"}
    configs = [_machine(tmp_path / f"machine{index}", team, search) for index in range(2)]
    workers = [_worker(config, "search") for config in configs]
    for worker in workers:
        _, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr.decode()[-3000:]
    study = optuna.load_study(study_name="shared", storage=make_storage(team["optuna"]))
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert sorted(trial.number for trial in study.trials) == [0, 1, 2, 3]  # none lost, none twice
    client = MlflowClient(team["mlflow"])
    experiment = client.get_experiment_by_name("search")
    runs = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'trial'")
    assert len(runs) == 4 and sorted(run.data.metrics["trial_number"] for run in runs) == [0, 1, 2, 3]
    assert {trial.user_attrs[RUN_ID_ATTR] for trial in study.trials} == {run.info.run_id for run in runs}
    assert all(run.info.status == "FINISHED" for run in runs)
    (study_run,) = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'study'")
    assert {run.data.tags["mlflow.parentRunId"] for run in runs} == {study_run.info.run_id}  # one parent
    # each machine kept its own caches; the server holds the traces of the trials' LLM calls
    assert all((config.parent / "cache").is_dir() for config in configs)
    traces = client.search_traces(locations=[experiment.experiment_id], run_id=runs[0].info.run_id, max_results=5)
    assert traces

    # A `harness run` of two variants from a third machine: the comparison run lands on the same server.
    run_config = yaml.safe_load(configs[0].read_text())
    run_config["search"] = {}
    run_config["tracking"]["experiment"] = "variants"
    run_config["variants"] = {"grid": {"explain.selection.num_examples": [3, 6]}}
    third = tmp_path / "machine2"
    third.mkdir()
    (third / "config.yaml").write_text(yaml.safe_dump(run_config))
    done = _worker(third / "config.yaml", "run")
    _, stderr = done.communicate(timeout=900)
    assert done.returncode == 0, stderr.decode()[-3000:]
    variants = client.get_experiment_by_name("variants")
    (parent,) = client.search_runs([variants.experiment_id], "tags.`harness.role` = 'comparison'")
    assert PAIRED_COMPARISONS_TABLE in {item.path for item in client.list_artifacts(parent.info.run_id, "tables")}


def test_a_killed_workers_trial_is_failed_by_heartbeats(team, tmp_path):
    team["llm"].faults = FaultPlan(latency_s=0.5)  # a trial long enough to be killed midway
    search = {"n_trials": 1, "pruner": "none", "sampler": "random", "study_name": "heartbeat", "heartbeat_s": 1,
              "space": {"explain.selection.num_examples": {"low": 3, "high": 9, "step": 3}}}  # fmt: skip
    try:
        first = _worker(_machine(tmp_path / "machine0", team, search), "search")
        storage = make_storage(team["optuna"])
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # until the trial runs and has its MLflow run
            trials = optuna.load_study(study_name="heartbeat", storage=storage).trials if _exists(storage) else []
            if trials and RUN_ID_ATTR in trials[0].user_attrs:
                break
            assert first.poll() is None, first.communicate()[1].decode()[-3000:]
            time.sleep(0.5)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        time.sleep(6)  # past the grace period of 4 heartbeats
    finally:
        team["llm"].faults = FaultPlan()
    second = _worker(_machine(tmp_path / "machine1", team, search), "search")
    _, stderr = second.communicate(timeout=900)
    assert second.returncode == 0, stderr.decode()[-3000:]
    trials = optuna.load_study(study_name="heartbeat", storage=storage).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    run = MlflowClient(team["mlflow"]).get_run(trials[0].user_attrs[RUN_ID_ATTR])
    assert run.info.status == "FAILED" and "heartbeats" in run.data.tags["harness.error"]


def _exists(storage) -> bool:
    return any(summary.study_name == "heartbeat" for summary in optuna.get_all_study_summaries(storage))
