"""FADE's LLM orchestration against a real loopback server: rating batches and retries, the sparse retry,
the clarity generation calls, and a backend that never answers. No subject model needed."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from harness.config import FadeConfig, LLMConfig
from harness.errors import LLMError
from harness.evaluate.fade._calls import FeatureCalls, RaterBackend
from harness.evaluate.fade._clarity import generate_synthetic_texts, score_clarity
from harness.evaluate.fade._responsiveness import UNRATED, rate_natural_samples
from harness.evaluate.fade.prompts import RATING_PROMPT
from harness.evaluate.fade.rating import rate_sequences
from harness.llm import LLMClient, string_list_format
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.testing.responders import _SEQUENCE_SPLIT, FadeResponder

KEY_ENV = "FADE_RATING_TEST_KEY"
CONCEPT = "mentions 'then'"


class RecordingResponder(FadeResponder):
    """The scripted rater, remembering which sequence ids each rating request asked about."""

    def __init__(self) -> None:
        self.asked: list[list[int]] = []

    def __call__(self, messages):
        user = messages[-1]["content"]
        if messages[0]["content"] == RATING_PROMPT:
            self.asked.append([int(sequence_id) for sequence_id in _SEQUENCE_SPLIT.split(user)[1::2]])
        return super().__call__(messages)


@pytest.fixture
def responder():
    return RecordingResponder()


@pytest.fixture
def server(responder, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    with LoopbackServer(responder) as running:
        yield running


def make_calls(server, tmp_path, **settings) -> FeatureCalls:
    config = LLMConfig(
        model="openai/scripted",
        api_base=server.url,
        api_key_env=KEY_ENV,
        cache=settings.pop("cache", False),
        cache_path=str(tmp_path / "llm.sqlite"),
        backoff_base_s=0.001,
        backoff_max_s=0.01,
        **settings,
    )
    client = LLMClient(config, tmp_path, progress=False)
    return FeatureCalls(RaterBackend(generator=client, rater=client))


def sequences(count: int, every: int = 2) -> dict[int, str]:
    """Ids 100.. with every `every`-th text containing 'then'."""
    return {
        100 + i: (f"first this, then that ({i})" if i % every == 0 else f"nothing to see ({i})") for i in range(count)
    }


def expected_ratings(items: dict[int, str]) -> dict[int, int]:
    return {key: 2 if "then" in text else 0 for key, text in items.items()}


def test_sequences_are_rated_in_batches_with_the_known_answers(server, responder, tmp_path):
    items = sequences(40)
    calls = make_calls(server, tmp_path)
    ratings = asyncio.run(rate_sequences(calls, CONCEPT, items, batch_size=15, max_failed_retries=1))
    assert ratings == expected_ratings(items)
    assert server.requests == calls.requests == math.ceil(40 / 15)
    assert sorted(len(batch) for batch in responder.asked) == [10, 15, 15]
    assert sorted(sum(responder.asked, [])) == sorted(items)


def test_only_sequences_without_a_valid_rating_are_asked_again_once(server, responder, tmp_path):
    # Request 1 answers with a wrong id (one sequence lost), request 3 is unparsable (all ten lost).
    server.faults = FaultPlan(sequence=("wrong_ids", None, "malformed"))
    items = sequences(40)
    calls = make_calls(server, tmp_path, concurrency=1)  # requests arrive in batch order
    ratings = asyncio.run(rate_sequences(calls, CONCEPT, items, batch_size=15, max_failed_retries=1))
    assert ratings == expected_ratings(items)
    first_batch_lost = [responder.asked[0][0]]
    assert responder.asked[3] == first_batch_lost + responder.asked[2]  # the retry round: the 11 lost, in order
    assert server.requests == 4  # the reference's count too: ceil(40/15) + ceil(11/15)


def test_without_retries_failed_sequences_stay_unrated(server, tmp_path):
    server.faults = FaultPlan(sequence=(None, "malformed"))
    items = sequences(30)
    ratings = asyncio.run(
        rate_sequences(make_calls(server, tmp_path, concurrency=1), CONCEPT, items, batch_size=15, max_failed_retries=0)
    )
    assert len(ratings) == 15 and ratings == {key: expected_ratings(items)[key] for key in ratings}


def test_out_of_scale_ratings_are_retried_per_sequence(monkeypatch, tmp_path):
    """The reference drops a whole answer when one rating is off the 0-2 scale; we retry that sequence only."""
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    items = sequences(15)
    bad_id = 103
    first = json.dumps({str(key): 3 if key == bad_id else value for key, value in expected_ratings(items).items()})
    answers = iter([first])
    responder = RecordingResponder()
    with LoopbackServer(lambda messages: next(answers, None) or responder(messages)) as server:
        calls = make_calls(server, tmp_path)
        ratings = asyncio.run(rate_sequences(calls, CONCEPT, items, batch_size=15, max_failed_retries=1))
        assert ratings == expected_ratings(items) and server.requests == 2
    assert responder.asked == [[bad_id]]


def natural_corpus(size: int, concept_rows: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Activations rising with the position; the `concept_rows` highest samples contain 'then'."""
    activations = np.linspace(0.0, 1.0, size, dtype=np.float32)
    texts = [f"sample {i}" + (", then more" if i >= size - concept_rows else "") for i in range(size)]
    return activations, texts, np.arange(1000, 1000 + size)


@pytest.mark.parametrize(("threshold", "sparse_rounds"), [(15, 1), (3, 0)])
def test_sparse_concepts_get_one_more_draw_of_unrated_samples(server, tmp_path, threshold, sparse_rounds):
    activations, texts, sample_ids = natural_corpus(200, concept_rows=5)
    fade = FadeConfig(num_samples=60, retry_sparse_threshold=threshold)
    calls = make_calls(server, tmp_path)
    rated = asyncio.run(
        rate_natural_samples(calls, CONCEPT, activations, texts, sample_ids, fade, np.random.default_rng(0))
    )
    assert np.count_nonzero(rated.rounds == 0) == 60 and np.count_nonzero(rated.rounds == 1) == 60 * sparse_rounds
    assert np.unique(rated.positions).size == rated.positions.size  # the second draw takes unrated samples only
    assert not np.any(rated.ratings == UNRATED)
    # The top share puts the five concept samples (the highest activations) in the first draw.
    assert set(rated.positions[rated.ratings == 2]) == set(range(195, 200))
    assert server.requests == math.ceil(60 / 15) * (1 + sparse_rounds)


@pytest.mark.parametrize("structured_output", ["auto", "on", "off"])
def test_rating_and_generation_calls_carry_their_schemas_unless_off(server, tmp_path, structured_output):
    calls = make_calls(server, tmp_path, structured_output=structured_output)
    items = sequences(20)
    ratings = asyncio.run(rate_sequences(calls, CONCEPT, items, batch_size=15, max_failed_retries=0))
    texts, usable = asyncio.run(generate_synthetic_texts(calls, CONCEPT, FadeConfig(clarity_llm_calls=2)))
    assert ratings == expected_ratings(items) and len(texts) == 10 and usable == 2  # parsed either way
    rating_formats, generation_formats = server.response_formats[:2], server.response_formats[2:]
    if structured_output == "off":
        assert rating_formats == generation_formats == [None, None]
    else:
        assert {format_["json_schema"]["name"] for format_ in rating_formats} == {"fade_rating"}
        asked = sorted(format_["json_schema"]["schema"]["required"] for format_ in rating_formats)
        assert asked == sorted([[str(key) for key in items][:15], [str(key) for key in items][15:]])
        assert generation_formats == [string_list_format("fade_generation")] * 2
    usage = calls.backend.rater.usage
    assert usage.answers == {"fade_rating": 2, "fade_generation": 2} == usage.parsed


def test_clarity_calls_are_separate_requests_and_their_union_is_deduplicated(server, tmp_path):
    fade = FadeConfig(clarity_llm_calls=5)
    calls = make_calls(server, tmp_path, cache=True)
    texts, usable = asyncio.run(generate_synthetic_texts(calls, CONCEPT, fade))
    assert server.requests == 5 and usable == 5  # distinct seeds: none answered from another's cache entry
    assert len(texts) == 10 and all("then" in text.lower() for text in texts)  # the scripted ten sentences, once each
    again, _ = asyncio.run(generate_synthetic_texts(make_calls(server, tmp_path, cache=True), CONCEPT, fade))
    assert again == texts and server.requests == 5  # the second run is served by the cache


def test_no_usable_generation_answer_leaves_clarity_undefined(server, tmp_path):
    server.faults = FaultPlan(rate=1.0, kinds=("malformed",))

    async def activations_of(texts):
        raise AssertionError("no synthetic sample, so the subject model must not run")

    outcome = asyncio.run(
        score_clarity(
            make_calls(server, tmp_path), CONCEPT, np.ones(10), activations_of, FadeConfig(clarity_llm_calls=3)
        )
    )
    assert outcome.score.value is None and outcome.score.reason == "no_synthetic_samples"
    assert outcome.synthetic_texts == [] and outcome.usable_answers == 0


def test_a_backend_that_never_answers_stops_the_run(server, tmp_path):
    server.faults = FaultPlan(rate=1.0, kinds=("server_error",))
    calls = make_calls(server, tmp_path, max_retries=0)
    with pytest.raises(LLMError, match="HTTP 500"):
        asyncio.run(rate_sequences(calls, CONCEPT, sequences(5), batch_size=15, max_failed_retries=1))


def test_after_a_first_answer_a_failed_call_counts_as_unparsable(server, tmp_path):
    server.faults = FaultPlan(sequence=(None, "server_error"))
    calls = make_calls(server, tmp_path, max_retries=0)
    items = sequences(30)
    first = asyncio.run(
        rate_sequences(calls, CONCEPT, dict(list(items.items())[:15]), batch_size=15, max_failed_retries=0)
    )
    second = asyncio.run(
        rate_sequences(calls, CONCEPT, dict(list(items.items())[15:]), batch_size=15, max_failed_retries=0)
    )
    assert len(first) == 15 and second == {}
    assert (calls.requests, calls.failures) == (2, 1)
