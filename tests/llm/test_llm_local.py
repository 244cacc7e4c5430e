"""The embedded offline backend `local/...` through real litellm (the slow tests load the real model)."""

from __future__ import annotations

import litellm
import pytest

from harness.config import LLMConfig
from harness.errors import LLMError
from harness.llm import LLMClient, register_local_provider


@pytest.mark.slow
def test_concurrent_requests_are_micro_batched(tmp_path):
    provider = register_local_provider()
    assert register_local_provider() is provider  # idempotent
    client = LLMClient(LLMConfig(model="local/smollm2-135m", max_tokens=12, concurrency=4), tmp_path, progress=False)
    # different lengths, so the batch is really left-padded
    questions = ["Hi", "Name two colours.", "What is the capital of France? Answer in one word.", "Count to three."]
    calls_before = provider.generate_calls
    results = client.complete_many([[{"role": "user", "content": question}] for question in questions])
    generate_calls = provider.generate_calls - calls_before
    assert 1 <= generate_calls < len(questions)
    assert all(result.text.strip() for result in results)
    assert all(0 < result.completion_tokens <= 12 and result.prompt_tokens > 0 for result in results)
    usage = client.usage
    assert usage.calls == len(questions) and usage.cost_usd == 0.0 and usage.completion_tokens > 0

    # greedy decoding, padding masked: the most padded prompt asked alone (no cache) gives the same text
    uncached = LLMClient(LLMConfig(model="local/smollm2-135m", max_tokens=12, cache=False), tmp_path, progress=False)
    [alone] = uncached.complete_many([[{"role": "user", "content": questions[0]}]])
    assert alone.text == results[0].text


@pytest.mark.slow
def test_litellm_completion_reaches_the_local_model_directly():
    register_local_provider()
    response = litellm.completion(
        model="local/smollm2-135m", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert response.choices[0].message.content.strip()
    assert response.usage.completion_tokens <= 8


def test_an_unloadable_local_model_fails_at_once_with_the_loader_message(tmp_path):
    client = LLMClient(LLMConfig(model="local/no-such-model", cache=False), tmp_path, progress=False)
    [error] = client.complete_many([[{"role": "user", "content": "hi"}]])
    assert isinstance(error, LLMError)
    assert "local model 'no-such-model'" in str(error) and "not retried" in str(error)
    assert client.usage.calls == 1 and client.usage.retries == 0


@pytest.mark.slow
def test_a_sampled_answer_depends_on_its_seed_not_on_its_batch(tmp_path):
    question = [{"role": "user", "content": "Write three sentences about rivers."}]
    others = [[{"role": "user", "content": "Hi " * repeats}] for repeats in (3, 40, 90)]
    sampling = LLMClient(
        LLMConfig(model="local/smollm2-135m", max_tokens=40, temperature=1.0, cache=False), tmp_path, progress=False
    )
    [alone] = sampling.complete_many([question], seed=3)
    batched = sampling.complete_many([*others, question], seed=3)  # padded beside longer and shorter prompts
    assert batched[-1].text == alone.text
    [other_seed] = sampling.complete_many([question], seed=4)
    [no_seed] = sampling.complete_many([question])
    [seed_zero] = sampling.complete_many([question], seed=0)
    assert other_seed.text != alone.text and no_seed.text == seed_zero.text
    # a nucleus that holds only the likeliest token is greedy decoding
    greedy = LLMClient(LLMConfig(model="local/smollm2-135m", max_tokens=40, cache=False), tmp_path, progress=False)
    [nucleus] = sampling.complete_many([question], seed=3, top_p=1e-6)
    assert nucleus.text == greedy.complete_many([question])[0].text


@pytest.mark.slow
def test_a_batch_sharing_a_prompt_prefix_computes_it_once_and_answers_as_without_sharing(monkeypatch):
    from harness.evaluate.fade.prompts import generation_messages
    from harness.llm import _local_provider as local_provider

    handler = register_local_provider()
    settings = local_provider.GenerationSettings("smollm2-135m", max_new_tokens=8, temperature=0.0, top_p=None)
    requests = [
        local_provider.LocalRequest(generation_messages(concept)) for concept in ("import statements", "dates", "x")
    ]
    rows = [[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3, 4, 7, 8]]
    monkeypatch.setattr(local_provider, "MIN_SHARED_PREFIX_TOKENS", 3)
    inputs, shared = local_provider._shared_prefix_inputs(rows, pad_id=0)
    assert shared == 3
    assert inputs["input_ids"].tolist() == [[1, 2, 3, 0, 4, 5], [1, 2, 3, 0, 0, 9], [1, 2, 3, 4, 7, 8]]
    assert inputs["attention_mask"].tolist() == [[1, 1, 1, 0, 1, 1], [1, 1, 1, 0, 0, 1], [1, 1, 1, 1, 1, 1]]
    monkeypatch.setattr(local_provider, "MIN_SHARED_PREFIX_TOKENS", 16)
    shared_answers = handler.generate(settings, requests)
    monkeypatch.setattr(local_provider, "MIN_SHARED_PREFIX_TOKENS", 10**9)
    plain_answers = handler.generate(settings, requests)
    assert [answer.text for answer in shared_answers] == [answer.text for answer in plain_answers]
    assert [answer.prompt_tokens for answer in shared_answers] == [answer.prompt_tokens for answer in plain_answers]
