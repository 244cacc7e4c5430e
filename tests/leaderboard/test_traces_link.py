"""A feature page says where its variant's LLM-call traces are: a link into the MLflow UI when the store is a
tracking server, the store and run otherwise; nothing for a run that recorded no traces."""

from __future__ import annotations

import json

import mlflow
import pytest
from leaderboard_runs import DEMO_VARIANTS, log_variant

from harness.llm.tracing import CallTracer
from harness.track.store import default_tracking_uri, ensure_experiment
from leaderboard import build_site
from leaderboard._build import _SiteWriter

FEATURES = [0, 1, 2]


@pytest.fixture(scope="module")
def traced_store(tmp_path_factory):
    uri = default_tracking_uri(tmp_path_factory.mktemp("traced-mlruns"))
    experiment_id = ensure_experiment("traced", uri)
    traced_run = log_variant(experiment_id, DEMO_VARIANTS[0], FEATURES, seed=0)
    untraced_run = log_variant(experiment_id, DEMO_VARIANTS[1], FEATURES, seed=1)
    mlflow.set_tracking_uri(uri)
    span = CallTracer(traced_run, experiment_id, "fade").start(
        model="openai/scripted",
        messages=[{"role": "user", "content": "rate"}],
        params={},
        kind="fade_rating",
        context={"feature": 1},
    )
    span.finish(text='{"1": 0}', valid=True)
    mlflow.flush_trace_async_logging()
    yield uri, experiment_id, traced_run, untraced_run
    mlflow.set_tracking_uri(None)


def _writer(uri: str) -> _SiteWriter:
    writer = _SiteWriter.__new__(_SiteWriter)  # only the tracking URI is needed for the link
    writer.tracking_uri = uri
    return writer


def test_a_local_store_names_the_store_and_run_and_a_run_without_traces_gets_nothing(traced_store):
    uri, experiment_id, traced_run, untraced_run = traced_store
    link = _writer(uri)._traces_link(traced_run)
    assert link["url"] is None and traced_run in link["where"] and f"experiment {experiment_id}" in link["where"]
    assert _writer(uri)._traces_link(untraced_run) is None


def test_a_server_store_links_into_its_ui(traced_store, monkeypatch):
    uri, experiment_id, traced_run, _ = traced_store
    writer = _writer("http://mlflow.example:5000/")
    client = mlflow.MlflowClient
    monkeypatch.setattr("mlflow.MlflowClient", lambda *_: client(uri))  # the "server" is the local store
    link = writer._traces_link(traced_run)
    assert link == {
        "url": f"http://mlflow.example:5000/#/experiments/{experiment_id}/runs/{traced_run}/traces?workflowType=machine_learning",
        "where": None,
    }


def test_the_feature_page_shows_where_its_calls_are(traced_store, tmp_path, page):
    uri, _, traced_run, untraced_run = traced_store
    index = build_site(["traced"], uri, tmp_path / "site", title="traced", progress=False)
    pages = list((index.parent / "variants" / traced_run / "features").glob("*.html"))
    page.goto(f"{pages[0].as_uri()}#1")
    page.wait_for("document.getElementById('traces').textContent.length > 0")
    text = page.evaluate("document.getElementById('traces').textContent")
    assert "harness.feature = 1" in text and traced_run in text and "Traces tab" in text
    assert page.evaluate("document.querySelector('#traces a')") is None  # no server: a plain path, no link
    assert not page.errors()
    other = list((index.parent / "variants" / untraced_run / "features").glob("*.html"))[0]
    page.goto(f"{other.as_uri()}#1")
    page.wait_for("document.getElementById('feature-title').textContent.includes('1')")
    assert page.evaluate("document.getElementById('traces').textContent") == ""
    shared = json.loads(page.evaluate("document.getElementById('page-data').textContent"))["shared"]
    assert shared["traces"] is None
