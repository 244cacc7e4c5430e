"""tracking.trace_sample on a real sqlite MLflow store and the loopback server: every call of the sampled
features is a span, of the other features only the failed and retried calls are; a prompt a trace already
holds is stored once."""

from __future__ import annotations

import asyncio

import mlflow
import pytest
from llm_prompts import RATING_SYSTEM, rating_batches, rating_messages

from harness.config import TraceSampleConfig
from harness.llm import LLMClient
from harness.llm.tracing import CALL_ATTRIBUTE, CALLS_TAG, FEATURE_TAG, SAMPLED_TAG, STATUS_TAG, CallTracer
from harness.testing.loopback import FaultPlan
from harness.track.store import default_tracking_uri, ensure_experiment


@pytest.fixture
def run(tmp_path):
    experiment_id = ensure_experiment("sampled", default_tracking_uri(tmp_path / "mlruns"))
    with mlflow.start_run(experiment_id=experiment_id) as started:
        run_id = started.info.run_id
    yield run_id, experiment_id
    mlflow.set_tracking_uri(None)


def _traces(run_id, experiment_id):
    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")
    return {int(trace.info.tags[FEATURE_TAG]): trace for trace in traces}


def test_only_sampled_features_and_failed_or_retried_calls_are_traced(run, make_config, server):
    run_id, experiment_id = run
    client = LLMClient(make_config(concurrency=4), progress=False)
    client.tracer = CallTracer(run_id, experiment_id, "fade", TraceSampleConfig(first_features=3, share=0.0))
    batches = rating_batches(36)
    client.complete_many(
        [rating_messages(ids) for ids in batches], trace_context=[{"feature": i // 3} for i in range(36)]
    )
    # feature 7's next call (the server's next request) is answered at its second try
    server.faults = FaultPlan(sequence=(None,) * server.requests + ("server_error",))
    [retried] = client.complete_many([rating_messages([900])], trace_context={"feature": 7})
    server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))  # feature 8's next call fails for good
    [failed] = client.complete_many([rating_messages([901])], trace_context={"feature": 8})
    client.complete_many([rating_messages(batches[27])], trace_context={"feature": 9})  # a cache hit: not kept
    client.close()
    assert retried.attempts == 2 and isinstance(failed, Exception)

    traces = _traces(run_id, experiment_id)
    assert sorted(traces) == [0, 1, 2, 7, 8]  # the first 3 features asked about, and the two calls that went wrong
    for feature in (0, 1, 2):
        assert traces[feature].info.tags[SAMPLED_TAG] == "all" and traces[feature].info.tags[CALLS_TAG] == "3"
        assert len(traces[feature].data.spans) == 4
    for feature, status in ((7, "ok"), (8, "error")):
        tags = traces[feature].info.tags
        assert tags[SAMPLED_TAG] == "failures" and tags[CALLS_TAG] == "1" and tags[STATUS_TAG] == status
    [call] = [span for span in traces[7].data.spans if span.parent_id is not None]
    assert call.get_attribute("harness.attempts") == 2 and "Sequence ID 900" in call.inputs["messages"][-1]["content"]


def test_the_shared_features_are_the_same_in_any_order_and_nested_by_share():
    def sampled(share: float, order) -> set[int]:
        tracer = CallTracer("run", "0", "fade", TraceSampleConfig(first_features=0, share=share))
        return {feature for feature in order if tracer.keeps_all_calls(feature)}

    features = range(2000)
    fifth, half = sampled(0.2, features), sampled(0.5, reversed(features))
    assert fifth == sampled(0.2, reversed(features)) and fifth < half
    assert 0.17 < len(fifth) / 2000 < 0.23 and 0.46 < len(half) / 2000 < 0.54
    assert sampled(0.0, features) == set() and sampled(1.0, features) == set(features)
    first = CallTracer("run", "0", "fade", TraceSampleConfig(first_features=2, share=0.0))
    assert [first.keeps_all_calls(feature) for feature in (40, 3, 40, 17, None)] == [True, True, True, False, True]
    assert first.for_stage("scorers").keeps_all_calls(3)  # one decision per feature for every stage of the run


def test_a_long_prompt_is_stored_once_per_trace(run, make_config):
    run_id, experiment_id = run
    client = LLMClient(make_config(), progress=False)
    tracer = client.tracer = CallTracer(run_id, experiment_id, "fade")
    system = RATING_SYSTEM + " " + "Rate carefully. " * 40  # ~1 kB, as FADE's own prompts
    conversations = [
        [{"role": "system", "content": system}, message[1]] for message in map(rating_messages, rating_batches(4))
    ]
    with tracer.feature(5):
        asyncio.run(client.acomplete_many(conversations, trace_context={"feature": 5}))
    client.close()
    calls = [span for span in _traces(run_id, experiment_id)[5].data.spans if span.parent_id is not None]
    systems = {span.get_attribute(CALL_ATTRIBUTE): span.inputs["messages"][0]["content"] for span in calls}
    [holder] = [number for number, content in systems.items() if content == system]
    reference = f"[the same {len(system)} characters as call {holder} of this trace"
    assert sorted(systems) == [1, 2, 3, 4]
    assert all(content.startswith(reference) for number, content in systems.items() if number != holder)
    assert all("Sequence ID" in span.inputs["messages"][1]["content"] for span in calls)  # each its own samples
