"""A trial that fails is a failed trial with its reason and the search goes on; a worker that crashes
leaves its study's parent run ended with the reason, not RUNNING (issue #18, item 3)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow import MlflowClient

import harness.track.variant
from harness.artifacts import ERROR_FILE
from harness.config import parse_config
from harness.search.study import FAIL_REASON_ATTR, make_storage, run_search
from harness.track.runs import ERROR_TAG

pytestmark = pytest.mark.usefixtures("own_store")


def _config(folder: Path, space: dict, n_trials: int):
    return parse_config(
        {
            "name": "failing",
            "site": {"module": "model.layers.3.mlp.act_fn", "features": [5]},
            "explain": {"explainer": "top-tokens"},
            "activations": {"cache_dir": str(folder / "cache")},
            "tracking": {"experiment": "failing", "store_dir": str(folder / "mlruns")},
            "search": {"n_trials": n_trials, "sampler": "grid", "pruner": "none", "space": space},
        }
    )


def _study(folder: Path):
    return optuna.load_study(study_name="failing", storage=make_storage(str(folder / "mlruns" / "optuna-journal.log")))


def _parent():
    """The study's parent run (run_search pointed MLflow at the config's store)."""
    client = MlflowClient(mlflow.get_tracking_uri())
    experiment = client.get_experiment_by_name("failing")
    [parent] = client.search_runs([experiment.experiment_id], "tags.`harness.role` = 'study'")
    return parent


def test_failing_trials_are_recorded_with_their_reason_and_the_search_goes_on(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    missing = [str(tmp_path / "missing-a.jsonl"), str(tmp_path / "missing-b.jsonl")]
    outcome = run_search(_config(tmp_path, {"corpus.source": {"choices": missing}}, n_trials=2), progress=False)
    assert outcome.trials_finished == 0 and outcome.trials_failed == 2
    trials = _study(tmp_path).trials
    assert [trial.state for trial in trials] == [optuna.trial.TrialState.FAIL] * 2
    for trial in trials:
        assert trial.params["corpus.source"] in trial.user_attrs[FAIL_REASON_ATTR]
    assert _parent().info.status == "FINISHED"
    assert "Traceback" not in capfd.readouterr().err  # each failure is told as one line


@pytest.mark.parametrize(("crash", "status"), [(KeyboardInterrupt(), "KILLED"), (RuntimeError("a bug"), "FAILED")])
def test_a_crashed_worker_ends_its_study_run_with_the_reason(tmp_path, monkeypatch, crash, status):
    monkeypatch.chdir(tmp_path)

    def crashing_trial(*args, **kwargs):
        raise crash  # Ctrl-C, or a bug, in the middle of a trial

    monkeypatch.setattr(harness.track.variant, "track_variant", crashing_trial)
    with pytest.raises(type(crash)):
        run_search(
            _config(tmp_path, {"explain.top_tokens.num_tokens": {"choices": [3, 4]}}, n_trials=2), progress=False
        )
    parent = _parent()
    assert parent.info.status == status
    reason = parent.data.tags[ERROR_TAG]
    assert ("interrupted" in reason) if status == "KILLED" else ("RuntimeError: a bug" in reason)
    artifact = MlflowClient(mlflow.get_tracking_uri()).download_artifacts(parent.info.run_id, ERROR_FILE, str(tmp_path))
    assert reason in Path(artifact).read_text()
