"""complete_many's long-lived event loop (harness.llm.per_loop.LoopThread) against the real loopback server,
which counts TCP connections: batches reuse the connections of the ones before, close() and the end of a loop
run to its end close them, and a signal in the waiting thread stops the batch's calls with no report."""

from __future__ import annotations

import logging
import signal
import threading
import time

import pytest
from llm_prompts import rating_messages

from harness.errors import Terminated
from harness.llm import LLMClient
from harness.llm.per_loop import run_to_end
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.testing.responders import FadeResponder

TRANSPORTS = ("openai", "litellm")


def _closed_within(server: LoopbackServer, seconds: float = 10.0) -> bool:
    """Whether every connection to the server closes within `seconds` (its side sees the client's close late)."""
    deadline = time.monotonic() + seconds
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.open_connections == 0


def _batch_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "llm-batches"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_batches_reuse_the_connections_of_the_ones_before_and_answer_alike(server, make_config, transport):
    server.faults = FaultPlan(latency_s=0.05)  # so the bound's 4 calls are in flight together
    client = LLMClient(make_config(transport=transport, concurrency=4, cache=False), progress=False)
    conversations = [rating_messages([k, k + 1]) for k in range(12)]
    first = client.complete_many(conversations)
    opened = server.connections
    assert 1 <= opened <= 4 and server.peak_in_flight == 4
    second = client.complete_many(conversations)
    third = client.complete_many(conversations[:4])
    assert server.connections == opened and server.requests == 28  # answered, over the first batch's connections
    expected = [FadeResponder()(messages) for messages in conversations]
    assert [r.text for r in first] == [r.text for r in second] == expected and [r.text for r in third] == expected[:4]
    client.close()


def test_close_closes_the_connections_and_ends_the_loops_thread(server, make_config):
    """On the direct path: litellm's connections are litellm's (its client cache, shared by the process)."""
    before = _batch_threads()
    client = LLMClient(make_config(transport="openai", concurrency=4, cache=False), progress=False)
    client.complete_many([rating_messages([k]) for k in range(8)])
    assert server.open_connections >= 1 and len(_batch_threads() - before) == 1
    client.close()
    assert _closed_within(server) and _batch_threads() - before == set()
    client.close()  # twice is harmless


def test_the_end_of_a_loop_run_to_its_end_closes_the_connections_made_in_it(server, make_config):
    """FADE's calls run in a loop of its own (run_to_end): the SDK clients made there are closed as it ends."""
    client = LLMClient(make_config(transport="openai", concurrency=4, cache=False), progress=False)
    results = run_to_end(client.acomplete_many([rating_messages([k]) for k in range(8)]))
    assert len(results) == 8 and server.connections >= 1
    assert _closed_within(server)


def test_a_signal_while_a_batch_runs_cancels_its_calls_quietly_and_the_client_goes_on(server, make_config, caplog):
    """SIGTERM (here SIGALRM raising the same Terminated) reaches the thread that waits on the batch: the batch's
    calls are cancelled before it goes on, asyncio reports nothing, and the next batch is answered."""
    server.faults = FaultPlan(latency_s=0.2)
    client = LLMClient(make_config(cache=False, concurrency=2), progress=False)
    conversations = [rating_messages([k]) for k in range(20)]  # ~2 s: 10 rounds of 0.2 s

    def terminate(signum, frame):
        raise Terminated()

    caplog.set_level(logging.ERROR, logger="asyncio")
    previous = signal.signal(signal.SIGALRM, terminate)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Terminated):
            client.complete_many(conversations)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    stopped_at = server.requests
    time.sleep(0.6)
    assert 1 <= stopped_at < 20 and server.requests == stopped_at  # no call went on after the raise
    assert client.usage.calls == stopped_at
    assert [r.text for r in client.complete_many(conversations[:2])] == [
        FadeResponder()(messages) for messages in conversations[:2]
    ]
    assert not [record for record in caplog.records if record.name == "asyncio"], caplog.text
    client.close()


def test_above_the_sdks_100_kept_connections_every_slot_keeps_its_own(server, make_config):
    """The SDK's pool keeps 100 idle connections: at a bound of 110, 10 would be closed and opened again in every
    batch."""
    server.faults = FaultPlan(latency_s=0.3)  # so the 110 calls are in flight together
    client = LLMClient(make_config(transport="openai", concurrency=110, cache=False), progress=False)
    conversations = [rating_messages([k]) for k in range(110)]
    client.complete_many(conversations)
    opened = server.connections
    client.complete_many(conversations)
    assert opened > 100 and server.connections == opened
    client.close()


def test_a_batch_started_from_inside_a_batch_fails_instead_of_waiting_for_itself(server, make_config):
    client = LLMClient(make_config(cache=False), progress=False)
    inner = [rating_messages([1])]
    with pytest.raises(RuntimeError, match="called from its own loop"):
        client.complete_many(inner, validate=lambda text: bool(client.complete_many(inner)))
    assert [r.text for r in client.complete_many(inner)] == [FadeResponder()(inner[0])]
    client.close()
