"""The real MLflow UI (`mlflow server` on a sqlite store, headless Chromium): our experiment opens on its runs
table, not on MLflow 3's GenAI overview, and a run's traces link shows its LLM calls."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow_server import mlflow_server

from harness.llm.tracing import CallTracer
from harness.track.store import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    default_tracking_uri,
    ensure_experiment,
    experiment_url,
    run_traces_url,
)

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 180  # the server imports all of MLflow; a busy 2-core machine takes a while
RUN_NAME = "template=plain"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A store with an experiment made before experiments had a kind (tagged when reopened), a run and one
    traced LLM call, served by `mlflow server`."""
    folder = tmp_path_factory.mktemp("mlflow-ui")
    uri = default_tracking_uri(folder / "mlruns")
    ensure_experiment("other", uri)
    # as an older harness made it: no kind tag
    legacy = MlflowClient(uri).create_experiment("demo", artifact_location=(folder / "artifacts").as_uri())
    experiment_id = ensure_experiment("demo", uri)
    assert experiment_id == legacy
    with mlflow.start_run(experiment_id=experiment_id, run_name=RUN_NAME) as run:
        mlflow.log_metric("clarity_mean", 0.5)
        span = CallTracer(run.info.run_id, experiment_id, "fade").start(
            model="openai/scripted",
            messages=[{"role": "user", "content": "Sequence ID 1: rate me"}],
            params={"temperature": 0},
            kind="fade_rating",
            context={"feature": 5, "purpose": "responsiveness"},
        )
        span.finish(text='{"1": 2}', valid=True, parsed=True, attempts=1, prompt_tokens=12, completion_tokens=3)
    mlflow.flush_trace_async_logging()
    mlflow.set_tracking_uri(None)
    with mlflow_server(uri, folder, startup_timeout_s=STARTUP_TIMEOUT_S) as url:
        yield {"url": url, "uri": uri, "experiment_id": experiment_id, "run_id": run.info.run_id, "folder": folder}


def test_the_experiment_is_tagged_as_model_development(ui):
    experiment = MlflowClient(ui["uri"]).get_experiment(ui["experiment_id"])
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_the_experiment_opens_on_its_runs_table(ui, page):
    page.emulate(1400, 900)
    page.goto(experiment_url(ui["url"], ui["experiment_id"]))
    page.wait_for(f"document.body.innerText.includes({RUN_NAME!r})", timeout=90)
    shot = page.screenshot(ui["folder"] / "experiment.png", full_page=False)
    assert shot.stat().st_size > 10_000
    text = page.evaluate("document.body.innerText")
    location = page.evaluate("location.hash")
    assert f"/experiments/{ui['experiment_id']}/runs" in location
    assert "1 matching run" in text and "Run Name" in text  # the runs table
    assert "Observability" not in text and "No data available" not in text  # not the GenAI overview


def test_a_runs_traces_link_shows_its_llm_calls(ui, page):
    page.emulate(1400, 900)
    page.goto(run_traces_url(ui["url"], ui["experiment_id"], ui["run_id"]))
    page.wait_for("document.body.innerText.includes('Sequence ID 1: rate me')", timeout=90)  # the call's prompt
    page.screenshot(ui["folder"] / "run-traces.png", full_page=False)
    assert f"/runs/{ui['run_id']}/traces" in page.evaluate("location.hash")
    assert "1 of 1" in page.evaluate("document.body.innerText")  # this run's one call
