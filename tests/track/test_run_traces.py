"""Every LLM call of a tracked run is a span of an MLflow trace of its run, one trace per stage and feature:
a real scripted run (real subject model, loopback LLM server through litellm, real sqlite store), then the
traces are searched back.

A feature's traces are found by run and feature id and hold the prompts and the answers; a forced rerun
answers from the response cache, asks the backend nothing, and its traces say so; the planted key is in no
trace.
"""

from __future__ import annotations

import shutil

import mlflow
import pytest
from mlflow import MlflowClient

from configs import tiny_config, write_config
from harness.config import load_config
from harness.llm.tracing import CACHE_HITS_TAG, CACHE_TAG, CALLS_TAG, FEATURE_TAG, KIND_TAG, PURPOSE_TAG, STAGE_TAG
from harness.testing.loopback import LoopbackServer
from harness.track.experiment import run_experiment
from harness.track.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

pytestmark = pytest.mark.slow

KEY_ENV = "HARNESS_TEST_TRACES_KEY"
PLANTED_KEY = "sk-planted-traces-9e8d7c6b5a"
FEATURES = [5, 77]


def _config(folder, server_url: str, traces: bool = True, scorers: bool = True):
    data = tiny_config(
        folder,
        server_url,
        {
            "name": "traces-test",
            "llm": {"model": "openai/scripted", "api_base": server_url, "api_key_env": KEY_ENV, "backoff_base_s": 0.01},
            "corpus.num_samples": 80,
            "corpus.seed": 3,
            "explain.selection.num_examples": 5,
            "fade.faithfulness": {"num_samples": 3, "generation_length": 4, "modification_factors": [0, 10]},
            "scorers": {"enabled": ["detection"] if scorers else [], "detection": {"num_examples": 6}},
            "tracking.experiment": "traced",
            "tracking.plot_features": 0,
            "tracking.traces": traces,
        },
    )
    return load_config(write_config(folder, data))


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traced")
    with LoopbackServer() as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, PLANTED_KEY)
        patch.chdir(folder)
        config = _config(folder, server.url)
        [first] = run_experiment(config, progress=False)
        asked = server.requests
        # A fresh run of the same variant, its FADE results not kept (else FADE would resume them and ask
        # nothing): every answer comes from the LLM response cache.
        shutil.rmtree(folder / "cache" / "runs")
        [cached] = run_experiment(config, force=True, progress=False)
        asked_again = server.requests - asked
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("traced")
    yield {
        "folder": folder,
        "client": client,
        "experiment": experiment,
        "first": first,
        "cached": cached,
        "asked": asked,
        "asked_again": asked_again,
    }
    mlflow.set_tracking_uri(None)


def _traces(traced, run_id: str, filter_string: str | None = None):
    return mlflow.search_traces(
        locations=[traced["experiment"].experiment_id], run_id=run_id, filter_string=filter_string, return_type="list"
    )


def _calls(trace) -> list:
    """The trace's call spans (the children of its root)."""
    [root] = [span for span in trace.data.spans if span.parent_id is None]
    return [span for span in trace.data.spans if span.parent_id == root.span_id]


def test_a_features_calls_are_found_by_run_and_feature_and_hold_prompt_and_answer(traced):
    run_id = traced["first"].run_id
    found = _traces(traced, run_id, f"tags.`{FEATURE_TAG}` = '77'")
    assert all(trace.info.tags[FEATURE_TAG] == "77" for trace in found)
    assert all(trace.info.trace_metadata["mlflow.sourceRun"] == run_id for trace in found)
    by_stage = {trace.info.tags[STAGE_TAG]: trace for trace in found}
    assert sorted(by_stage) == sorted(trace.info.tags[STAGE_TAG] for trace in found) == ["explain", "fade", "scorers"]
    calls = {
        (stage, span.get_attribute("harness.purpose"), span.get_attribute(KIND_TAG))
        for stage, trace in by_stage.items()
        for span in _calls(trace)
    }
    assert {
        ("explain", "explain", "explainer"),
        ("fade", "clarity", "fade_generation"),
        ("fade", "responsiveness", "fade_rating"),
        ("scorers", None, "detection"),
    } <= calls
    fade = by_stage["fade"].info.tags
    assert {"clarity", "responsiveness"} <= set(fade[PURPOSE_TAG].split(",")) and "fade_rating" in fade[KIND_TAG]
    description = traced["first"].per_feature.set_index("feature").loc[77, "description"]
    [explained] = _calls(by_stage["explain"])
    assert explained.inputs["messages"][-1]["role"] == "user" and explained.inputs["messages"][-1]["content"]
    assert explained.outputs["json"]["description"] == description  # the parsed answer is the run's description
    assert (
        explained.get_attribute(CACHE_TAG) == "miss" and explained.get_attribute("harness.model") == "openai/scripted"
    )
    ratings = [span for span in _calls(by_stage["fade"]) if span.get_attribute(KIND_TAG) == "fade_rating"]
    assert ratings
    for span in ratings:
        assert description in span.inputs["messages"][-1]["content"]  # the rater saw the description...
        assert set(span.outputs["json"].values()) <= {0, 1, 2}  # ...and answered ratings
        assert span.get_attribute("harness.prompt_tokens") > 0 and span.get_attribute("harness.latency_s") > 0


def test_every_call_of_the_run_is_one_span_in_its_features_trace(traced):
    first = traced["first"]
    traces = _traces(traced, first.run_id)
    assert len(traces) == 3 * len(FEATURES)  # explain, fade and scorers, each feature
    assert sum(len(_calls(trace)) for trace in traces) == first.metrics["llm_requests"] > 0
    assert sum(int(trace.info.tags[CALLS_TAG]) for trace in traces) == first.metrics["llm_requests"]
    assert {trace.info.tags[CACHE_TAG] for trace in traces} == {"miss"}
    assert {trace.info.tags[FEATURE_TAG] for trace in traces} == {str(feature) for feature in FEATURES}
    assert all(trace.info.state == "OK" for trace in traces)


def test_a_cached_rerun_adds_cache_hit_traces_without_asking_the_backend(traced):
    cached = traced["cached"]
    assert traced["asked"] > 0 and traced["asked_again"] == 0
    assert cached.run_id != traced["first"].run_id
    traces = _traces(traced, cached.run_id)
    assert sum(int(trace.info.tags[CACHE_HITS_TAG]) for trace in traces) == cached.metrics["llm_requests"]
    assert cached.metrics["llm_requests"] == cached.metrics["llm_cache_hits"] > 0
    assert {trace.info.tags[CACHE_TAG] for trace in traces} == {"hit"}
    [hit] = _traces(traced, cached.run_id, f"tags.`{FEATURE_TAG}` = '5' AND tags.`{STAGE_TAG}` = 'fade'")
    rating = next(span for span in _calls(hit) if span.get_attribute(KIND_TAG) == "fade_rating")
    assert rating.outputs["answer"] and rating.get_attribute("harness.prompt_tokens") == 0  # nothing spent
    # the first run's traces are still its own
    first = _traces(traced, traced["first"].run_id)
    assert sum(len(_calls(trace)) for trace in first) == traced["first"].metrics["llm_requests"]


def test_the_experiment_opens_on_its_runs_and_the_key_is_in_no_trace(traced):
    assert traced["experiment"].tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    leaked = [
        str(path)
        for path in traced["folder"].rglob("*")
        if path.is_file() and PLANTED_KEY.encode() in path.read_bytes()
    ]
    assert not leaked, f"the API key leaked into {leaked}"


def test_tracking_traces_off_records_none(tmp_path):
    with LoopbackServer() as server, pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, PLANTED_KEY)
        patch.chdir(tmp_path)
        config = _config(tmp_path, server.url, traces=False, scorers=False)
        [outcome] = run_experiment(config, progress=False)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment_id = MlflowClient(uri).get_experiment_by_name("traced").experiment_id
        assert outcome.metrics["llm_requests"] > 0
        assert mlflow.search_traces(locations=[experiment_id], run_id=outcome.run_id, return_type="list") == []
    finally:
        mlflow.set_tracking_uri(None)
