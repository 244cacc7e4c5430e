"""Token log-probabilities through the LLM layer: loopback server -> litellm -> client -> cache, the cache's
upgrade from the version without them, and the local model's (the slow test loads it)."""

from __future__ import annotations

import math
import sqlite3

import pytest

from harness.config import LLMConfig
from harness.errors import CacheError
from harness.llm import CachedResponse, LLMClient, ResponseCache
from harness.llm._cache import SCHEMA_VERSION
from harness.testing.loopback import LoopbackServer, ScriptedAnswer

QUESTION = [{"role": "user", "content": "Is this about dogs? The dog barked."}]
SCRIPTED = ScriptedAnswer(
    (
        ('{"1": ', {'{"1": ': -0.01, '{"2": ': -4.6}),
        ("1", {"1": math.log(0.7), "0": math.log(0.2), "5": math.log(0.1)}),
        ("}", {"}": 0.0}),
    )
)


def test_plain_answers_come_with_certain_tokens_only_when_asked(server, make_config):
    client = LLMClient(make_config(), progress=False)
    [scored] = client.complete_many([QUESTION], logprobs=True, top_logprobs=3)
    assert scored.logprobs is not None
    assert "".join(token for token, _ in scored.logprobs) == scored.text
    assert all(alternatives == {token: 0.0} for token, alternatives in scored.logprobs)
    [plain] = client.complete_many([QUESTION])
    assert plain.text == scored.text and plain.logprobs is None


def test_scripted_log_probabilities_survive_the_wire_and_the_cache(make_config):
    with LoopbackServer(lambda messages: SCRIPTED) as scripted:
        config = make_config(api_base=scripted.url)
        [first] = LLMClient(config, progress=False).complete_many([QUESTION], logprobs=True, top_logprobs=2)
        assert first.text == '{"1": 1}' and not first.cached
        token, alternatives = first.logprobs[1]
        # the two likeliest alternatives of the value token, as the server sent them
        assert token == "1" and alternatives == pytest.approx({"1": math.log(0.7), "0": math.log(0.2)})
        assert [token for token, _ in first.logprobs] == ['{"1": ', "1", "}"]
        again = LLMClient(config, progress=False)
        [cached] = again.complete_many([QUESTION], logprobs=True, top_logprobs=2)
        assert cached.cached and cached.logprobs == first.logprobs and scripted.requests == 1


def test_a_sampled_token_outside_the_top_alternatives_is_kept(make_config):
    """top_logprobs=1 sends only the likeliest alternative; the written token must still be readable."""
    unlikely = ScriptedAnswer((("0", {"1": math.log(0.6), "0": math.log(0.4)}),))
    with LoopbackServer(lambda messages: unlikely) as scripted:
        config = make_config(api_base=scripted.url, cache=False)
        [answer] = LLMClient(config, progress=False).complete_many([QUESTION], logprobs=True, top_logprobs=1)
    assert answer.logprobs == (("0", pytest.approx({"1": math.log(0.6), "0": math.log(0.4)})),)


VERSION_1_SCHEMA = """
CREATE TABLE responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, created REAL NOT NULL
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO responses VALUES ('old-key', 'openai/old', 'an old answer', 12, 3, 0.5, 0.0);
"""


def test_a_version_1_cache_is_upgraded_in_place_keeping_its_answers(tmp_path):
    path = tmp_path / "llm-cache.sqlite"
    with sqlite3.connect(path) as connection:
        connection.executescript(VERSION_1_SCHEMA)
    with ResponseCache(path) as cache:
        assert cache.get("old-key") == CachedResponse("openai/old", "an old answer", 12, 3, 0.5, None)
        cache.put("new-key", CachedResponse("m", "1", 1, 1, 0.0, (("1", {"1": -0.1, "0": -2.3}),)))
        assert cache.get("new-key").logprobs == (("1", {"1": -0.1, "0": -2.3}),)
    with sqlite3.connect(path) as connection:
        (version,) = connection.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    assert version == str(SCHEMA_VERSION)
    with ResponseCache(path) as reopened:  # a second open finds nothing left to upgrade
        assert len(reopened) == 2


def test_a_cache_from_a_newer_harness_is_a_clear_error(tmp_path):
    path = tmp_path / "llm-cache.sqlite"
    ResponseCache(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(CacheError, match="schema version 99"):
        ResponseCache(path)


@pytest.mark.slow
def test_the_local_model_reports_the_log_probabilities_of_its_greedy_tokens(tmp_path):
    config = LLMConfig(model="local/smollm2-135m", max_tokens=16, cache=False)
    client = LLMClient(config, tmp_path, progress=False)
    assert client.supports_logprobs
    questions = [[{"role": "user", "content": "Name a colour."}], QUESTION]  # one batch, left-padded
    scored = client.complete_many(questions, logprobs=True, top_logprobs=4)
    plain = client.complete_many(questions)
    for answer, reference in zip(scored, plain):
        assert answer.text == reference.text  # asking for log-probabilities does not change greedy decoding
        assert "".join(token for token, _ in answer.logprobs).strip() == answer.text
        for token, alternatives in answer.logprobs:
            assert len(alternatives) <= 5
            assert alternatives[token] == pytest.approx(max(alternatives.values()))  # greedy: the likeliest
            assert sum(math.exp(value) for value in alternatives.values()) <= 1.0 + 1e-5
