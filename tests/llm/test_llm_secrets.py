"""A planted API key reaches the server and nothing else: no log line, cache byte or error text."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
from llm_prompts import rating_batches, rating_messages, rating_validators

from harness.errors import LLMError
from harness.llm import LLMClient
from harness.testing.loopback import FaultPlan


@pytest.fixture
def loud_loggers():
    """A user turning every logger up to DEBUG."""
    names = ("LiteLLM", "httpx", "openai", "aiohttp")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_planted_key_appears_in_no_output(server, make_config, api_key, caplog, capfd, loud_loggers):
    caplog.set_level(logging.DEBUG)
    server.faults = FaultPlan(rate=0.3, seed=3, hang_s=2.0, slow_s=0.01, retry_after_s=0.01)
    config = make_config(timeout_s=0.5)
    client = LLMClient(config)
    assert logging.getLogger("LiteLLM").getEffectiveLevel() >= logging.WARNING
    batches = rating_batches(60)
    results = client.complete_many([rating_messages(ids) for ids in batches], validate=rating_validators(batches))
    assert all(result.valid for result in results)

    # a server that echoes the key in its error (as some do): the error we raise must not carry it
    server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))
    [error] = client.complete_many([rating_messages([999])])
    assert isinstance(error, LLMError) and "HTTP 401" in str(error) and "[redacted]" in str(error)
    error_texts = [str(error), repr(error), "".join(traceback.format_exception(error))]

    client.close()
    assert f"Bearer {api_key}" in server.authorizations  # the key was used
    captured = capfd.readouterr()
    cache_bytes = b"".join(path.read_bytes() for path in Path(config.cache_path).parent.glob("llm-cache.sqlite*"))
    outputs = {
        "log records": "\n".join(record.getMessage() for record in caplog.records),
        "stdout": captured.out,
        "stderr": captured.err,
        "exception": "\n".join(error_texts),
        "config dump": config.model_dump_json(),
        "usage": str(client.usage.as_dict()),
    }
    assert caplog.records, "the retries should have been logged at DEBUG"
    for where, text in outputs.items():
        assert api_key not in text, where
    assert api_key.encode() not in cache_bytes


IMPLICIT_KEY = "sk-implicit-OPENAI-7c1d9e3f5a2b4c6d"


def test_the_providers_own_key_variable_is_redacted_from_an_echoing_401(server, make_config, monkeypatch, capfd):
    """No api_key_env: litellm sends OPENAI_API_KEY itself; the server's 401 echoes it (issue #30)."""
    monkeypatch.setenv("OPENAI_API_KEY", IMPLICIT_KEY)
    server.faults = FaultPlan(rate=1.0, kinds=("auth_error",))
    client = LLMClient(make_config(api_key_env=None, cache=False), progress=False)
    [error] = client.complete_many([rating_messages([1])])
    assert f"Bearer {IMPLICIT_KEY}" in server.authorizations  # litellm did send the provider's variable
    assert isinstance(error, LLMError) and "HTTP 401" in str(error) and "[redacted]" in str(error)
    assert IMPLICIT_KEY not in str(error) + "".join(traceback.format_exception(error)) + str(capfd.readouterr())


def test_a_key_reflected_into_an_answer_is_scrubbed_before_it_is_cached_or_returned(make_config, api_key):
    """A backend that reflects the key into its answers gets it into no description, sample or cache."""
    from harness.testing.loopback import LoopbackServer

    with LoopbackServer(responder=lambda messages: f"the key is {api_key}, as you sent it") as reflecting:
        config = make_config(api_base=reflecting.url)
        client = LLMClient(config, progress=False)
        [first] = client.complete_many([rating_messages([1])])
        [cached] = client.complete_many([rating_messages([1])])
        client.close()
    assert first.text == cached.text == "the key is [redacted], as you sent it" and cached.cached
    cache_bytes = b"".join(path.read_bytes() for path in Path(config.cache_path).parent.glob("llm-cache.sqlite*"))
    assert api_key.encode() not in cache_bytes
