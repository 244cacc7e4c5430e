"""LLMClient through real litellm against the loopback server: retries, errors, bounds, threads, accounting."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref

import pytest
from llm_prompts import KEY_ENV, rating_messages

from harness.errors import LLMError, Terminated
from harness.llm import Completion, LLMClient, Usage
from harness.llm.per_loop import PerLoop
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.testing.responders import FadeResponder


def ask(client: LLMClient, text: str = "hello", **params) -> Completion:
    return asyncio.run(client.acomplete([{"role": "user", "content": text}], **params))


def test_retry_after_is_honoured(server, make_config):
    server.faults = FaultPlan(sequence=("rate_limit",), retry_after_s=1.0)
    client = LLMClient(make_config(backoff_base_s=0.001, backoff_max_s=5.0, cache=False), progress=False)
    started = time.perf_counter()
    completion = ask(client)
    assert time.perf_counter() - started >= 1.0
    assert completion.attempts == 2 and client.usage.retries == 1 and server.requests == 2


@pytest.mark.parametrize("bound", ["backoff_max_s", "timeout_s"])
def test_retry_after_is_capped_by_backoff_max_and_the_timeout(server, make_config, bound):
    """`Retry-After: 3600` with 6 retries must not hold a call for 6 hours (issue #30)."""
    server.faults = FaultPlan(rate=1.0, kinds=("rate_limit",), retry_after_s=3600)
    limits = {"backoff_max_s": 0.2, "timeout_s": 30.0} if bound == "backoff_max_s" else {"backoff_max_s": 60.0}
    limits |= {"timeout_s": 0.2} if bound == "timeout_s" else {}
    client = LLMClient(make_config(max_retries=3, cache=False, **limits), progress=False)
    started = time.perf_counter()
    with pytest.raises(LLMError, match=r"HTTP 429.*gave up after 4 attempts"):
        ask(client)
    assert time.perf_counter() - started < 3 * 0.2 + 2.0
    assert server.requests == 4


@pytest.mark.parametrize("fault", ["no_choices", "oversized"])
def test_an_unusable_answer_is_retried_then_failed_never_a_result(server, make_config, fault):
    """`choices: []` and an answer beyond llm.max_answer_chars are errors: asked again, and when the backend
    keeps answering so, the call fails (no IndexError, no 10 MB description)."""
    server.faults = FaultPlan(sequence=(fault,), oversized_chars=5000)
    client = LLMClient(make_config(max_answer_chars=1000, cache=False), progress=False)
    completion = ask(client)
    assert completion.attempts == 2 and len(completion.text) < 1000 and server.injected == {fault: 1}
    server.faults = FaultPlan(rate=1.0, kinds=(fault,), oversized_chars=5000)
    with pytest.raises(LLMError, match=r"UnusableAnswer.*gave up after 3 attempts.*max_answer_chars"):
        ask(LLMClient(make_config(max_answer_chars=1000, max_retries=2, cache=False), progress=False))


def test_exhausted_retries_name_backend_model_and_cause(server, make_config):
    server.faults = FaultPlan(rate=1.0, kinds=("server_error",))
    client = LLMClient(make_config(max_retries=3, cache=False), progress=False)
    with pytest.raises(LLMError) as caught:
        ask(client)
    message = str(caught.value)
    assert "openai model 'openai/scripted'" in message and server.url in message
    assert "InternalServerError (HTTP 500)" in message and "gave up after 4 attempts" in message
    assert server.requests == 4
    assert client.usage.as_dict() | {"cost_usd": 0} == Usage(requests=1, calls=4, retries=3, failures=1).as_dict()


def test_timeouts_are_retried_then_reported(server, make_config):
    server.faults = FaultPlan(rate=1.0, kinds=("hang",), hang_s=3.0)
    client = LLMClient(make_config(timeout_s=0.3, max_retries=1, cache=False), progress=False)
    started = time.perf_counter()
    with pytest.raises(LLMError, match="Timeout.*gave up after 2 attempts"):
        ask(client)
    assert time.perf_counter() - started < 2.5
    assert server.requests == 2 and server.injected == {"hang": 2}


def test_non_retryable_errors_fail_at_once(server, make_config):
    client = LLMClient(make_config(api_base=server.url.removesuffix("/v1") + "/wrong/v1", cache=False), progress=False)
    with pytest.raises(LLMError, match=r"HTTP 404.*not retried.*check llm.model and llm.api_base"):
        ask(client)
    assert server.requests == 0 and client.usage.calls == 1 and client.usage.failures == 1


def test_a_refused_connection_is_retried_then_reported(make_config):
    with LoopbackServer() as gone:
        dead_url = gone.url
    client = LLMClient(make_config(api_base=dead_url, max_retries=2, cache=False), progress=False)
    with pytest.raises(LLMError, match="gave up after 3 attempts.*check that the backend is up"):
        ask(client)
    assert client.usage.retries == 2


def test_concurrency_is_bounded(api_key, make_config):
    # each answer takes 0.25 s, longer than the client's own work per request on a loaded 2-core machine
    with LoopbackServer(responder=lambda messages: "ok", faults=FaultPlan(latency_s=0.25)) as server:
        client = LLMClient(make_config(api_base=server.url, concurrency=4, cache=False), progress=False)
        results = client.complete_many([[{"role": "user", "content": str(i)}] for i in range(24)])
        assert server.requests == 24 and server.peak_in_flight == 4
    assert [result.text for result in results] == ["ok"] * 24


def test_invalid_answers_are_asked_again_and_returned_flagged_when_the_budget_runs_out(server, make_config):
    server.faults = FaultPlan(rate=1.0, kinds=("malformed",))
    client = LLMClient(make_config(max_invalid_retries=2), progress=False)
    completion = ask(client, validate=lambda text: text.startswith("{") and text.endswith("}"))
    assert not completion.valid and completion.attempts == 3 and server.requests == 3
    assert client.usage.invalid_answers == 3 and client.usage.retries == 2 and client.usage.failures == 0
    assert len(client.cache) == 0  # a rejected answer is never cached


def test_complete_many_keeps_order_and_reports_failures_in_place(make_config, api_key):
    def responder(messages):
        return messages[-1]["content"].upper()

    with LoopbackServer(responder=responder, faults=FaultPlan(rate=1.0, kinds=("auth_error",))) as failing:
        client = LLMClient(make_config(api_base=failing.url, cache=False), progress=False)
        [result] = client.complete_many([[{"role": "user", "content": "x"}]])
        assert isinstance(result, LLMError) and "HTTP 401" in str(result)
        with pytest.raises(LLMError, match="1 of 1 LLM calls failed; the first: .*HTTP 401"):
            client.complete_many([[{"role": "user", "content": "x"}]], return_exceptions=False)
    with LoopbackServer(responder=responder) as working:
        client = LLMClient(make_config(api_base=working.url, cache=False), progress=False)
        words = [f"word{i}" for i in range(40)]
        results = client.complete_many([[{"role": "user", "content": word}] for word in words])
    assert [result.text for result in results] == [word.upper() for word in words]


def test_complete_many_works_from_a_worker_thread_and_inside_a_running_loop(server, make_config):
    client = LLMClient(make_config(cache=False), progress=False)
    conversations = [rating_messages([k]) for k in range(10)]
    expected = [FadeResponder()(messages) for messages in conversations]
    from_thread: list = []
    worker = threading.Thread(target=lambda: from_thread.extend(client.complete_many(conversations)))
    worker.start()
    worker.join()
    assert [result.text for result in from_thread] == expected

    async def notebook_cell():
        return client.complete_many(conversations)

    assert [result.text for result in asyncio.run(notebook_cell())] == expected


def test_a_signal_during_a_batch_stops_it_with_no_shutdown_traceback(server, make_config, caplog):
    """SIGTERM raises Terminated in whichever call runs: it reaches the caller, and asyncio reports no task
    that ended with it (CI saw "unhandled exception during asyncio.run() shutdown" under the one line)."""
    server.faults = FaultPlan(latency_s=0.2)
    client = LLMClient(make_config(cache=False, concurrency=4), progress=False)

    def terminated_on_the_first_answer(text: str) -> bool:
        raise Terminated()

    caplog.set_level(logging.ERROR, logger="asyncio")
    with pytest.raises(Terminated):
        client.complete_many([rating_messages([k]) for k in range(12)], validate=terminated_on_the_first_answer)
    assert not [record for record in caplog.records if record.name == "asyncio"], caplog.text


def test_usage_and_cost_from_configured_prices(server, make_config):
    client = LLMClient(make_config(input_cost_per_token=1e-6, output_cost_per_token=3e-6), progress=False)
    completion = ask(client, "four words in here")
    # the loopback server counts whitespace-separated words as tokens
    assert (completion.prompt_tokens, completion.completion_tokens) == (4, len(completion.text.split()))
    assert completion.cost_usd == pytest.approx(4e-6 + completion.completion_tokens * 3e-6)
    cached = ask(client, "four words in here")
    assert cached.cached and cached.cost_usd == 0 and cached.text == completion.text
    usage = client.usage
    assert (usage.requests, usage.calls, usage.cache_hits) == (2, 1, 1)
    assert usage.cost_usd == pytest.approx(completion.cost_usd)
    merged = usage + usage
    assert merged.requests == 4 and merged.cost_usd == pytest.approx(2 * completion.cost_usd)


def test_litellm_price_map_prices_known_models(server, make_config):
    client = LLMClient(make_config(model="openai/gpt-4o-mini"), progress=False)
    completion = ask(client)
    import litellm

    prompt_cost, completion_cost = litellm.cost_per_token(
        model="gpt-4o-mini", prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens
    )
    assert completion.cost_usd == pytest.approx(prompt_cost + completion_cost) and completion.cost_usd > 0


def test_reserved_and_bad_inputs_are_rejected(make_config):
    client = LLMClient(make_config(), progress=False)
    with pytest.raises(LLMError, match=r"\['api_key', 'timeout'\] are set by the LLM client"):
        ask(client, api_key="x", timeout=3)
    with pytest.raises(LLMError, match="non-empty list"):
        asyncio.run(client.acomplete([]))
    with pytest.raises(LLMError, match="got 1 validators for 2 conversations"):
        client.complete_many([[{"role": "user", "content": "a"}]] * 2, validate=[bool])
    with pytest.raises(LLMError, match="not a model string litellm understands"):
        LLMClient(make_config(model="no-such-provider-model"), progress=False)


def test_missing_key_variable_is_named(make_config, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    client = LLMClient(make_config(), progress=False)
    with pytest.raises(LLMError, match=f"environment variable {KEY_ENV} .* is not set"):
        ask(client)


def test_per_loop_objects_are_dropped_with_their_loop():
    per_loop = PerLoop(object)
    loops = []

    async def get():
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return per_loop.get(), per_loop.get()

    first_a, first_b = asyncio.run(get())
    second, _ = asyncio.run(get())
    assert first_a is first_b and second is not first_a
    assert len(per_loop) == 1
    gc.collect()
    assert loops[0]() is None  # the first, closed loop is not kept alive


def test_a_missing_price_is_told_once_per_model_not_once_per_client(make_config, caplog):
    model = f"openai/unpriced-{time.time_ns()}"
    for _ in range(3):
        LLMClient(make_config(model=model), progress=False).close()
    told = [record for record in caplog.records if "has no price" in record.getMessage()]
    assert len(told) == 1 and model in told[0].getMessage()
