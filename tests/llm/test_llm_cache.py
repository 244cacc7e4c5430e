"""The sqlite response cache: re-runs make no calls, failures are not kept, killed runs lose nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from llm_prompts import expected_rating, rating_batches, rating_messages, rating_validators

from harness.errors import CacheError, LLMError
from harness.llm import CachedResponse, LLMClient, ResponseCache, cache_key, parse_ratings
from harness.testing.loopback import FaultPlan

HERE = Path(__file__).parent

RUN_BATCH = """
import sys
sys.path.insert(0, {here!r})
from llm_prompts import rating_batches, rating_messages, rating_validators
from harness.config import LLMConfig
from harness.llm import LLMClient

config = LLMConfig.model_validate_json(sys.argv[1])
batches = rating_batches(int(sys.argv[2]), per_call=int(sys.argv[3]))
results = LLMClient(config, progress=False).complete_many(
    [rating_messages(ids) for ids in batches], validate=rating_validators(batches), return_exceptions=False
)
print("finished", len(results))
"""


def rating_run(client: LLMClient, calls: int, per_call: int = 3):
    batches = rating_batches(calls, per_call)
    results = client.complete_many([rating_messages(ids) for ids in batches], validate=rating_validators(batches))
    for ids, completion in zip(batches, results):
        assert parse_ratings(completion.text, ids).ratings == {k: expected_rating(k) for k in ids}
    return results


def test_identical_rerun_makes_no_calls_and_gives_identical_outputs(server, make_config):
    first = rating_run(LLMClient(make_config(), progress=False), 60)
    assert server.requests == 60 and not any(result.cached for result in first)
    server.reset_counts()
    rerun_client = LLMClient(make_config(), progress=False)
    second = rating_run(rerun_client, 60)
    assert server.requests == 0
    assert [result.text for result in second] == [result.text for result in first]
    assert all(result.cached for result in second) and rerun_client.usage.cache_hits == 60


def test_cache_can_be_switched_off_and_keys_cover_parameters(server, make_config, tmp_path):
    client = LLMClient(make_config(cache=False), progress=False)
    rating_run(client, 5)
    rating_run(client, 5)
    assert server.requests == 10 and client.cache is None and not (tmp_path / "llm-cache.sqlite").exists()
    cached = LLMClient(make_config(), progress=False)
    messages = rating_messages([1, 2])
    cached.complete_many([messages])
    cached.complete_many([messages], temperature=0.7)
    cached.complete_many([messages], temperature=0.7)
    assert server.requests == 12 and len(cached.cache) == 2


def test_failures_are_never_cached(server, make_config):
    server.faults = FaultPlan(rate=1.0, kinds=("server_error",))
    client = LLMClient(make_config(max_retries=0), progress=False)
    [failed] = client.complete_many([rating_messages([1])])
    assert isinstance(failed, LLMError) and len(client.cache) == 0
    server.faults = FaultPlan()
    [answered] = client.complete_many([rating_messages([1])])
    [again] = client.complete_many([rating_messages([1])])
    assert not answered.cached and again.cached and server.requests == 2


def test_cache_key_is_stable_and_specific():
    messages = [{"role": "user", "content": "hi"}]
    key = cache_key({"model": "openai/x"}, messages, {"temperature": 0.0, "max_tokens": 5})
    assert key == cache_key({"model": "openai/x"}, [dict(messages[0])], {"max_tokens": 5, "temperature": 0.0})
    assert key != cache_key({"model": "openai/y"}, messages, {"temperature": 0.0, "max_tokens": 5})
    assert key != cache_key(
        {"model": "openai/x"}, [{"role": "user", "content": "hi!"}], {"temperature": 0.0, "max_tokens": 5}
    )
    assert key != cache_key({"model": "openai/x"}, messages, {"temperature": 0.1, "max_tokens": 5})


def test_an_unreadable_cache_file_is_a_clear_error(tmp_path):
    path = tmp_path / "llm-cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError, match="cannot be opened .* delete the file"):
        ResponseCache(path)


def test_damaged_pages_of_an_open_cache_are_one_clear_error_through_the_client(server, make_config, tmp_path):
    """Pages overwritten after the file opens fine (issue #30): a CacheError naming the file, not a chain of
    sqlite and event-loop tracebacks."""
    config = make_config()
    rating_run(LLMClient(config, progress=False), 40)
    path = Path(config.cache_path)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page :] = b"\xff" * (len(data) - 2 * page)  # every page after the schema's
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=rf"{path.name} (is damaged|cannot be opened).*delete the file"):
        LLMClient(config, progress=False).complete_many([rating_messages([1, 2])])


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """What a second run meets while the first is creating the same fresh cache file: a write lock on it."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_a_fresh_cache_being_created_by_another_run_is_waited_for(tmp_path):
    path = tmp_path / "llm-cache.sqlite"
    holder = hold_write_lock(path)
    threading.Timer(0.5, holder.rollback).start()
    started = time.monotonic()
    with ResponseCache(path) as cache:
        waited = time.monotonic() - started
        key = cache_key({"model": "m"}, [{"role": "user", "content": "hi"}], {})
        cache.put(key, CachedResponse("m", "hello", 1, 1, 0.0))
        assert cache.get(key) == CachedResponse("m", "hello", 1, 1, 0.0)
    assert 0.4 < waited < 30
    holder.close()


def test_a_cache_locked_past_the_busy_timeout_is_a_clear_error(tmp_path):
    path = tmp_path / "llm-cache.sqlite"
    holder = hold_write_lock(path)
    started = time.monotonic()
    with pytest.raises(CacheError, match="stayed locked by another process .* llm.cache_path"):
        ResponseCache(path, busy_timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 10
    holder.rollback()
    with ResponseCache(path) as cache:  # usable once the other run lets go
        assert len(cache) == 0
    holder.close()


def start_batch(config, calls: int, per_call: int, tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "run_batch.py"
    script.write_text(RUN_BATCH.format(here=str(HERE)))
    return subprocess.Popen(
        [sys.executable, str(script), config.model_dump_json(), str(calls), str(per_call)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def integrity(path: Path) -> tuple[str, int]:
    with sqlite3.connect(path) as connection:
        (status,) = connection.execute("PRAGMA integrity_check").fetchone()
        (rows,) = connection.execute("SELECT COUNT(*) FROM responses").fetchone()
    return status, rows


def test_a_killed_run_loses_nothing_it_finished(server, make_config, tmp_path):
    server.faults = FaultPlan(latency_s=0.03)
    config = make_config(concurrency=8)
    calls = 300
    child = start_batch(config, calls, 3, tmp_path)
    deadline = time.monotonic() + 120
    while server.requests < 100 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read()
    status, finished = integrity(Path(config.cache_path))
    assert status == "ok" and 50 < finished < calls
    server.reset_counts()
    client = LLMClient(config, progress=False)
    rating_run(client, calls)
    assert server.requests == calls - finished
    assert client.usage.cache_hits == finished
    assert integrity(Path(config.cache_path)) == ("ok", calls)


def test_concurrent_processes_share_one_cache_file(server, make_config, tmp_path):
    server.faults = FaultPlan(latency_s=0.01)
    config = make_config(concurrency=8)
    # the first 120 calls are common to both processes; the second also asks 60 more
    children = [start_batch(config, 120, 3, tmp_path), start_batch(config, 180, 3, tmp_path)]
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        assert out.startswith("finished")
    assert integrity(Path(config.cache_path)) == ("ok", 180)
    assert 180 <= server.requests <= 300
