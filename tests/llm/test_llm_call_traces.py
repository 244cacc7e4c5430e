"""LLMClient.tracer on a real sqlite MLflow store: a batch's calls about one feature are one trace (a span
each), calls about no feature a trace each, from any thread, linked to their run; a key the server echoes
back in its error is in no trace."""

from __future__ import annotations

import threading

import mlflow
import pytest
from llm_prompts import rating_batches, rating_messages, rating_validators
from mlflow import MlflowClient

from harness.errors import LLMError
from harness.llm import AnswerFormat, LLMClient, ratings_format
from harness.llm.tracing import (
    CACHE_HITS_TAG,
    CACHE_TAG,
    CALLS_TAG,
    FEATURE_TAG,
    KIND_TAG,
    STAGE_TAG,
    STATUS_TAG,
    CallTracer,
)
from harness.testing.loopback import FaultPlan
from harness.track.store import default_tracking_uri, ensure_experiment


@pytest.fixture
def store(tmp_path):
    uri = default_tracking_uri(tmp_path / "mlruns")
    experiment_id = ensure_experiment("calls", uri)
    runs = []
    for name in ("a", "b"):
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            runs.append(run.info.run_id)
    yield uri, experiment_id, runs
    mlflow.set_tracking_uri(None)


def _answer(ids):
    return AnswerFormat("fade_rating", ratings_format("fade_rating", ids, (0, 1, 2)), lambda text: True)


def test_calls_from_threads_are_traced_to_their_own_runs(store, make_config, tmp_path):
    uri, experiment_id, (run_a, run_b) = store
    batches = rating_batches(12)
    clients = []
    for run_id in (run_a, run_b):  # a cache each, so neither answers the other's first calls
        client = LLMClient(make_config(cache_path=str(tmp_path / f"cache-{run_id}.sqlite")), progress=False)
        client.tracer = CallTracer(run_id, experiment_id, "fade")
        clients.append(client)

    def ask(client, offset):
        client.complete_many(
            [rating_messages(ids) for ids in batches],
            validate=rating_validators(batches),
            answer_format=[_answer(ids) for ids in batches],
            trace_context=[{"feature": offset + index % 3} for index in range(len(batches))],
        )

    # both runs at once, each from its own thread and event loop, no MLflow run active in either
    threads = [threading.Thread(target=ask, args=(client, offset)) for client, offset in zip(clients, (0, 100))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ask(clients[0], 0)  # again: the cache answers, and says so
    for client in clients:
        client.close()
    mlflow.flush_trace_async_logging()
    traces_a = mlflow.search_traces(locations=[experiment_id], run_id=run_a, return_type="list")
    traces_b = mlflow.search_traces(locations=[experiment_id], run_id=run_b, return_type="list")
    # a trace per feature and batch: run a asked twice about 3 features, run b once; 4 calls each
    assert len(traces_a) == 6 and len(traces_b) == 3
    assert {trace.info.tags[FEATURE_TAG] for trace in traces_b} == {"100", "101", "102"}
    assert sorted(trace.info.tags[CACHE_TAG] for trace in traces_a) == ["hit"] * 3 + ["miss"] * 3
    assert {trace.info.tags[CALLS_TAG] for trace in traces_a + traces_b} == {"4"}
    assert {(trace.info.tags[STAGE_TAG], trace.info.tags[KIND_TAG]) for trace in traces_a} == {("fade", "fade_rating")}
    one = mlflow.search_traces(
        locations=[experiment_id],
        run_id=run_a,
        return_type="list",
        filter_string=f"tags.`{FEATURE_TAG}` = '1' AND tags.`{CACHE_TAG}` = 'miss'",
    )
    assert len(one) == 1 and one[0].info.tags[CACHE_HITS_TAG] == "0"
    [root] = [span for span in one[0].data.spans if span.parent_id is None]
    calls = [span for span in one[0].data.spans if span.parent_id == root.span_id]
    assert root.name == "fade feature 1" and len(calls) == 4 == len(one[0].data.spans) - 1
    for span in calls:
        assert "Sequence ID" in span.inputs["messages"][-1]["content"] and span.inputs["params"]["temperature"] == 0
        assert span.outputs["json"] and set(span.outputs["json"].values()) <= {0, 1, 2}
        assert span.get_attribute(CACHE_TAG) == "miss" and span.get_attribute("harness.feature") == 1


def test_a_held_feature_is_one_trace_and_a_call_about_no_feature_its_own(store, make_config, tmp_path):
    uri, experiment_id, (run_id, _) = store
    client = LLMClient(make_config(cache_path=str(tmp_path / "held.sqlite")), progress=False)
    tracer = client.tracer = CallTracer(run_id, experiment_id, "fade")
    batches = rating_batches(3)
    with tracer.feature(9):  # a stage holding feature 9 across batches: one trace, a hit and misses in it
        client.complete_many([rating_messages(batches[0])], trace_context={"feature": 9, "purpose": "clarity"})
        client.complete_many(
            [rating_messages(ids) for ids in batches], trace_context={"feature": 9, "purpose": "faithfulness"}
        )
    client.complete_many([rating_messages(batches[1])], trace_context={"purpose": "floor"})  # no feature
    client.close()
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")
    [held] = [trace for trace in traces if trace.info.tags.get(FEATURE_TAG) == "9"]
    [alone] = [trace for trace in traces if FEATURE_TAG not in trace.info.tags]
    assert len(traces) == 2
    assert held.info.tags[CALLS_TAG] == "4" and held.info.tags[CACHE_HITS_TAG] == "1"  # batches[0] asked twice
    assert held.info.tags[CACHE_TAG] == "mixed" and held.info.tags["harness.purpose"] == "clarity,faithfulness"
    assert len(held.data.spans) == 5
    assert alone.info.tags[CALLS_TAG] == "1" and alone.info.tags[CACHE_TAG] == "hit"  # batches[1] asked before
    assert len(alone.data.spans) == 1


def test_a_key_echoed_by_the_server_is_in_no_trace(store, make_config, server, api_key, tmp_path):
    uri, experiment_id, (run_id, _) = store
    client = LLMClient(make_config(), progress=False)
    client.tracer = CallTracer(run_id, experiment_id, "scorers")
    server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))  # 401 with the Authorization header in its text
    [error] = client.complete_many([rating_messages([7])], trace_context={"feature": 7, "note": f"x {api_key} y"})
    client.close()
    assert isinstance(error, LLMError) and f"Bearer {api_key}" in server.authorizations
    mlflow.flush_trace_async_logging()
    [trace] = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")
    assert trace.info.tags[STATUS_TAG] == "error" and trace.info.state == "ERROR"
    [call] = [span for span in trace.data.spans if span.parent_id is not None]
    assert "HTTP 401" in call.outputs["error"]
    assert api_key not in trace.to_json()
    store_bytes = b"".join(path.read_bytes() for path in (tmp_path / "mlruns").rglob("*") if path.is_file())
    assert api_key.encode() not in store_bytes


def test_no_tracer_no_traces(store, make_config):
    uri, experiment_id, (run_id, _) = store
    client = LLMClient(make_config(), progress=False)
    client.complete_many([rating_messages([1, 2])])
    client.close()
    mlflow.flush_trace_async_logging()
    assert MlflowClient(uri).search_traces(locations=[experiment_id]) == []
