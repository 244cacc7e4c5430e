"""Rating calls through real litellm against a server that injects 30% faults: every rating arrives, and
the client's retry counts equal what the server injected. 500 calls with every kind mixed, and a shorter
batch per kind so a regression names its kind."""

from __future__ import annotations

import time

import pytest
from llm_prompts import expected_rating, rating_batches, rating_messages, rating_validators

from harness.llm import LLMClient, parse_ratings
from harness.testing.loopback import ANSWER_FAULTS, RECOVERABLE_FAULTS, FaultPlan


def run_rating_batch(server, make_config, kinds: tuple[str, ...], seed: int, calls: int):
    # A call that times out without an injected hang would be one retry too many: the timeout is far above
    # any answer time on a loaded machine, and a hang outlasts it.
    timeout_s = 2.5 if "hang" in kinds else 30.0
    server.faults = FaultPlan(rate=0.3, kinds=kinds, seed=seed, slow_s=0.05, retry_after_s=0.01, hang_s=8.0)
    client = LLMClient(make_config(timeout_s=timeout_s, cache=False), progress=False)
    batches = rating_batches(calls)
    started = time.perf_counter()
    results = client.complete_many([rating_messages(ids) for ids in batches], validate=rating_validators(batches))
    return client, batches, results, time.perf_counter() - started


def check_recovered(server, client, batches, results) -> None:
    for ids, completion in zip(batches, results):
        assert completion.valid, completion
        assert parse_ratings(completion.text, ids).ratings == {k: expected_rating(k) for k in ids}
    usage = client.usage
    injected = server.injected
    assert usage.failures == 0 and usage.requests == len(batches)
    assert usage.calls == server.requests == len(batches) + usage.retries
    # every injected fault except plain latency cost exactly one retry
    assert usage.retries == sum(count for kind, count in injected.items() if kind != "latency")
    assert usage.invalid_answers == sum(injected.get(kind, 0) for kind in ANSWER_FAULTS)
    assert 0.2 < sum(injected.values()) / server.requests < 0.4


@pytest.mark.parametrize("kind", RECOVERABLE_FAULTS)
def test_thirty_percent_faults_of_one_kind(server, make_config, kind):
    client, batches, results, _ = run_rating_batch(server, make_config, (kind,), seed=1, calls=120)
    check_recovered(server, client, batches, results)
    assert set(server.injected) == {kind}


def test_thirty_percent_faults_of_every_kind_mixed(server, make_config):
    client, batches, results, elapsed = run_rating_batch(server, make_config, RECOVERABLE_FAULTS, seed=2, calls=500)
    check_recovered(server, client, batches, results)
    assert set(server.injected) == set(RECOVERABLE_FAULTS)
    assert elapsed < 60
