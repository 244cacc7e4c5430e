"""The two ways LLMClient sends (llm.transport): the openai SDK directly and litellm, against the same loopback
server. Same prompts, same answers, counts, costs, retries and errors on both; the setting resolves as
documented and is checked at load."""

from __future__ import annotations

import asyncio
import json

import pytest
from llm_prompts import expected_rating, rating_batches, rating_messages, rating_validators
from pydantic import ValidationError

from harness.config import LLMConfig
from harness.errors import LLMError
from harness.llm import AnswerFormat, LLMClient, parse_ratings, ratings_format
from harness.testing.loopback import FaultPlan

TRANSPORTS = ("openai", "litellm")


def _formats(batches):
    return [
        AnswerFormat("fade_rating", ratings_format("fade_rating", ids, (0, 1, 2)), lambda text: True) for ids in batches
    ]


def _run(server, make_config, transport: str, **settings):
    """The same 12 rating calls (each sent with its JSON schema, log-probabilities asked) through `transport`."""
    client = LLMClient(make_config(transport=transport, cache=False, **settings), progress=False)
    assert client.transport == transport
    batches = rating_batches(12)
    results = client.complete_many(
        [rating_messages(ids) for ids in batches],
        validate=rating_validators(batches),
        answer_format=_formats(batches),
        logprobs=True,
        top_logprobs=2,
    )
    return client, batches, results


def test_both_transports_give_the_same_answers_counts_and_costs(server, make_config):
    prices = {"input_cost_per_token": 1e-6, "output_cost_per_token": 3e-6}
    runs = {}
    for transport in TRANSPORTS:
        formats_before = len(server.response_formats)
        client, batches, results = _run(server, make_config, transport, **prices)
        runs[transport] = (client.usage, results, server.response_formats[formats_before:])
        for ids, completion in zip(batches, results):
            assert parse_ratings(completion.text, ids).ratings == {k: expected_rating(k) for k in ids}
    (direct_usage, direct, direct_formats), (litellm_usage, via_litellm, litellm_formats) = runs.values()
    assert direct == via_litellm  # text, tokens, cost, attempts, validity, log-probabilities: every field
    assert direct_usage == litellm_usage
    assert direct_usage.calls == 12 and direct_usage.parsed == {"fade_rating": 12}
    assert direct_usage.cost_usd == pytest.approx(
        1e-6 * direct_usage.prompt_tokens + 3e-6 * direct_usage.completion_tokens
    )
    assert direct_usage.cost_usd > 0 and all(completion.logprobs for completion in direct)
    assert sorted(map(json.dumps, direct_formats)) == sorted(map(json.dumps, litellm_formats))  # in arrival order
    assert len(direct_formats) == 12 and all(fmt["type"] == "json_schema" for fmt in direct_formats)


def test_a_model_in_litellms_price_map_costs_the_same_on_both(server, make_config):
    """No price in the config: litellm prices the answer from its map on its path; the direct path asks the same
    map (litellm.cost_per_token), so both count the same, non-zero cost."""
    costs = {}
    for transport in TRANSPORTS:
        client = LLMClient(make_config(model="openai/gpt-4o-mini", transport=transport, cache=False), progress=False)
        completion = asyncio.run(client.acomplete(rating_messages([1, 2, 3])))
        costs[transport] = (completion.prompt_tokens, completion.completion_tokens, completion.cost_usd)
    assert costs["openai"] == pytest.approx(costs["litellm"]) and costs["openai"][2] > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transport_faults_are_retried_alike(server, make_config, transport):
    """429 (with Retry-After), 500, a dropped connection and a hang past the timeout: each costs one retry on
    either path, and the answer is the one a clean call gets."""
    server.faults = FaultPlan(
        sequence=("rate_limit", "server_error", "disconnect", "hang"), retry_after_s=0.01, hang_s=5.0
    )
    client = LLMClient(make_config(transport=transport, cache=False, timeout_s=1.0, concurrency=1), progress=False)
    completion = asyncio.run(client.acomplete(rating_messages([5, 6])))
    assert parse_ratings(completion.text, [5, 6]).ratings == {5: 2, 6: 0}
    assert completion.attempts == 5 and client.usage.retries == 4 and server.requests == 5
    assert server.injected == {"rate_limit": 1, "server_error": 1, "disconnect": 1, "hang": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_error_that_retrying_cannot_fix_fails_at_once_with_the_key_redacted(server, make_config, api_key, transport):
    server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))  # 401 that echoes the Authorization header
    client = LLMClient(make_config(transport=transport, cache=False), progress=False)
    with pytest.raises(LLMError, match=r"HTTP 401.*not retried.*check the key in \$HARNESS_TEST_LLM_KEY") as caught:
        asyncio.run(client.acomplete(rating_messages([1])))
    assert api_key not in str(caught.value) and f"Bearer {api_key}" in server.authorizations
    assert server.requests == 1 and client.usage.failures == 1


def test_auto_sends_directly_only_to_an_openai_compatible_server():
    def resolved(**settings) -> str:
        return LLMClient(LLMConfig(cache=False, **settings), progress=False).transport

    assert resolved(model="openai/served", api_base="http://127.0.0.1:9/v1") == "openai"
    assert resolved(model="openai/gpt-4o-mini") == "litellm"  # the OpenAI API itself: litellm unless asked
    assert resolved(model="openai/gpt-4o-mini", transport="openai") == "openai"
    assert resolved(model="ollama/llama3", api_base="http://127.0.0.1:9") == "litellm"
    assert resolved(model="openai/served", api_base="http://127.0.0.1:9/v1", transport="litellm") == "litellm"


def test_the_direct_transport_needs_an_openai_model():
    with pytest.raises(ValidationError, match="transport 'openai'.*'openai/<model>' models only"):
        LLMConfig(model="anthropic/claude-3-5-haiku-latest", transport="openai")
