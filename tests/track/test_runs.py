"""Variant runs against a real MLflow sqlite store in a temp folder, read back with MlflowClient."""

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from harness.track.runs import flatten, log_metrics, log_params, variant_run
from harness.track.store import default_tracking_uri, ensure_experiment


@pytest.fixture()
def experiment_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(tmp_path / "mlruns")
    experiment = ensure_experiment("tests", uri)
    yield experiment
    mlflow.set_tracking_uri(None)


def test_store_is_sqlite_with_artifacts_beside_it(tmp_path, experiment_id):
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    location = MlflowClient().get_experiment(experiment_id).artifact_location
    assert location == (tmp_path / "mlruns" / "artifacts" / "tests").as_uri()
    assert ensure_experiment("tests", default_tracking_uri(tmp_path / "mlruns")) == experiment_id
    assert not (tmp_path / "mlflow.db").exists(), "MLflow's cwd default store must not be created"


@pytest.mark.parametrize("name", ["..", ".", "../../etc"])
def test_an_experiments_artifacts_stay_inside_the_stores_artifacts_folder(tmp_path, experiment_id, name):
    experiment = ensure_experiment(name, default_tracking_uri(tmp_path / "mlruns"))
    location = MlflowClient().get_experiment(experiment).artifact_location
    folder = Path(location.removeprefix("file://")).resolve()
    assert folder.parent == (tmp_path / "mlruns" / "artifacts").resolve()


def test_finished_variant_is_skipped_and_forced_rerun_is_new(experiment_id):
    with variant_run(experiment_id, "key-a", "a") as first:
        log_metrics({"clarity.mean": 0.5, "purity.mean": None, "nan": float("nan")})
    assert not first.skipped and not first.resumed
    run = MlflowClient().get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"clarity.mean": 0.5}
    with variant_run(experiment_id, "key-a", "a") as again:
        pass
    assert again.skipped and again.run_id == first.run_id
    with variant_run(experiment_id, "key-a", "a", force=True) as forced:
        pass
    assert forced.run_id != first.run_id and not forced.skipped


def test_failed_variant_is_resumed_into_the_same_run(experiment_id):
    with pytest.raises(RuntimeError):
        with variant_run(experiment_id, "key-b", "b") as broken:
            log_params({"explain": {"template": "plain", "num_examples": 10}})
            raise RuntimeError("boom")
    assert MlflowClient().get_run(broken.run_id).info.status == "FAILED"
    with variant_run(experiment_id, "key-b", "b") as resumed:
        log_params({"explain": {"template": "plain", "num_examples": 10}, "extra": 1})
    assert resumed.resumed and resumed.run_id == broken.run_id
    run = MlflowClient().get_run(broken.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"explain.template": "plain", "explain.num_examples": "10", "extra": "1"}
    assert len(MlflowClient().search_runs([experiment_id])) == 1


def test_children_nest_under_their_parent(experiment_id):
    with variant_run(experiment_id, "parent", "comparison", role="comparison") as parent:
        for key in ("x", "y"):
            with variant_run(experiment_id, key, key, parent_run_id=parent.run_id) as child:
                assert mlflow.active_run().info.run_id == child.run_id
    children = MlflowClient().search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'")
    assert sorted(run.info.run_name for run in children) == ["x", "y"]


def test_flatten_dotted_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_params_logged_by_many_writers_at_once_on_one_run_all_land_once(experiment_id):
    """Search workers log the study's params on one shared run at the same moment."""
    import threading

    run_id = MlflowClient().create_run(experiment_id).info.run_id
    params = {"search": {f"p{index}": index for index in range(150)}}
    barrier = threading.Barrier(6)
    errors = []

    def writer():
        try:
            barrier.wait()
            with mlflow.start_run(run_id=run_id):
                log_params(params)
        except Exception as error:  # collected: a thread's exception would otherwise be lost
            errors.append(error)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert MlflowClient().get_run(run_id).data.params == {f"search.p{index}": str(index) for index in range(150)}


def test_one_corpus_logged_by_many_runs_at_once_is_one_dataset_of_the_experiment(experiment_id):
    """Search workers log the same corpus as the input of their trial runs at the same moment."""
    import threading

    import pandas as pd

    from harness.track.runs import log_dataset

    corpus = pd.DataFrame({"sample_id": range(50), "text": [f"sample {index}" for index in range(50)]})
    run_ids = [MlflowClient().create_run(experiment_id).info.run_id for _ in range(6)]
    barrier = threading.Barrier(len(run_ids))
    errors = []

    def writer(run_id):
        try:
            barrier.wait()
            with mlflow.start_run(run_id=run_id):
                log_dataset(corpus, "python-docs", context="corpus")
        except Exception as error:  # collected: a thread's exception would otherwise be lost
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    inputs = [MlflowClient().get_run(run_id).inputs.dataset_inputs for run_id in run_ids]
    assert all(len(found) == 1 and found[0].dataset.name == "python-docs" for found in inputs)
    assert len({found[0].dataset.digest for found in inputs}) == 1
