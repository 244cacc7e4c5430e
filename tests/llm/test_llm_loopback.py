"""The loopback server: its scripted FADE answers and its fault injection, seen over real HTTP."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from llm_prompts import CONCEPT, GENERATION_SYSTEM, rating_messages

from harness.errors import ConfigError
from harness.registry import RESPONDERS
from harness.testing.loopback import MALFORMED_ANSWER, FaultPlan, LoopbackServer
from harness.testing.responders import FadeResponder, concept_keywords, contains_keyword


@pytest.mark.parametrize(
    ("concept", "keywords"),
    [
        ('the word "cat"', ["cat"]),
        ("tokens 'New York' or \"Paris\"", ["New York", "Paris"]),
        ("Mentions of animals and pets", ["animals", "pets"]),
        ("it's the dog's bone", ["it's", "dog's", "bone"]),
    ],
)
def test_concept_keywords(concept, keywords):
    assert concept_keywords(concept) == keywords


def test_keywords_match_whole_words_case_insensitively():
    assert contains_keyword("A CAT!", ["cat"])
    assert not contains_keyword("concatenate", ["cat"])
    assert contains_keyword("I love New York.", ["New York"])


def test_fade_responder_rates_by_keyword():
    answer = FadeResponder()(rating_messages([0, 1, 5, 7]))
    assert json.loads(answer) == {"0": 2, "1": 0, "5": 2, "7": 0}


def test_fade_responder_generates_varied_sentences_with_the_keyword():
    messages = [{"role": "system", "content": GENERATION_SYSTEM}, {"role": "user", "content": f"Concept: {CONCEPT}"}]
    sentences = json.loads(FadeResponder()(messages))
    assert len(sentences) == 10 == len(set(sentences))
    assert all(contains_keyword(sentence, ["cat"]) for sentence in sentences)


def test_fade_responder_names_the_most_frequent_highlighted_token():
    prompt = "Example 1: the <<dog>> ran\nExample 2: a <<cat>> sat\nExample 3: my <<dog>> barked"
    assert FadeResponder()([{"role": "user", "content": prompt}]) == 'the token "dog"'


def test_fade_responder_answers_the_other_scorers_prompts_as_they_are_built():
    from harness.evaluate.scorers._judging import judging_messages
    from harness.evaluate.scorers._simulation import simulation_messages
    from harness.evaluate.scorers.prompts import system_prompt

    texts = ["the dog ran", "a <<cat>> sat", "my <<dog>> barked at x << 2"]
    detection = FadeResponder()(judging_messages(system_prompt("detection"), 'the word "dog"', texts))
    assert json.loads(detection) == {"1": 1, "2": 0, "3": 1}
    fuzzing = FadeResponder()(judging_messages(system_prompt("fuzzing"), 'the word "dog"', texts))
    assert json.loads(fuzzing) == {"1": 0, "2": 0, "3": 1}  # the first example mentions a dog, unmarked
    simulation = FadeResponder()(
        simulation_messages(system_prompt("simulation"), 'the word "dog"', ["My", " dog", "!"])
    )
    assert json.loads(simulation) == {"0": 0, "1": 10, "2": 0}


def test_responder_registry():
    assert RESPONDERS.names() == ["echo", "fade"]
    assert RESPONDERS.get("echo")()([{"role": "user", "content": "ping"}]) == "ping"
    with pytest.raises(ConfigError, match="unknown responder 'fadee'.*'fade'"):
        RESPONDERS.get("fadee")


def test_fault_draw_is_deterministic_and_close_to_the_rate():
    plan = FaultPlan(rate=0.3, seed=7)
    draws = [plan.draw(f"body {i}".encode(), 0) for i in range(4000)]
    assert draws == [plan.draw(f"body {i}".encode(), 0) for i in range(4000)]
    share = sum(draw is not None for draw in draws) / len(draws)
    assert 0.27 < share < 0.33
    assert {draw for draw in draws if draw} == set(plan.kinds)
    assert FaultPlan().draw(b"x", 0) is None


def test_fault_plan_rejects_unknown_kinds_and_rates():
    with pytest.raises(ValueError, match="unknown fault kinds \\['slowness'\\]"):
        FaultPlan(kinds=("slowness",))
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        FaultPlan(rate=1.5)


def post(server: LoopbackServer, messages, path="/chat/completions", headers=None):
    request = urllib.request.Request(
        server.url + path,
        data=json.dumps({"model": "scripted", "messages": messages}).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def http_error(server, messages, headers=None) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as caught:
        post(server, messages, headers=headers)
    return caught.value


def test_server_answers_and_counts_tokens():
    with LoopbackServer() as server:
        body = post(server, [{"role": "user", "content": "one two three"}])
        assert body["choices"][0]["message"]["content"].startswith("This scripted server")
        assert body["usage"]["prompt_tokens"] == 3
        assert server.requests == 1 and server.injected == {}


def test_server_injects_scripted_faults_in_order():
    sequence = ("rate_limit", "server_error", "auth_error", "malformed", "truncated", "wrong_ids", None)
    plan = FaultPlan(sequence=sequence, retry_after_s=0.25)
    messages = rating_messages([0, 1, 2, 3])
    with LoopbackServer(faults=plan) as server:
        limited = http_error(server, messages)
        assert limited.code == 429 and limited.headers["Retry-After"] == "0.25"
        assert http_error(server, messages).code == 500
        unauthorized = http_error(server, messages, {"Authorization": "Bearer sk-echoed"})
        assert unauthorized.code == 401 and "sk-echoed" in unauthorized.read().decode()
        assert post(server, messages)["choices"][0]["message"]["content"] == MALFORMED_ANSWER
        truncated = post(server, messages)["choices"][0]["message"]["content"]
        full = FadeResponder()(messages)
        assert truncated == full[: len(full) // 2]
        wrong = json.loads(post(server, messages)["choices"][0]["message"]["content"])
        assert wrong == {"1003": 2, "1": 0, "2": 0, "3": 0, "1004": 0}
        assert post(server, messages)["choices"][0]["message"]["content"] == full
        assert server.requests == 7
        assert server.injected == dict.fromkeys(sequence[:-1], 1)


def test_wrong_ids_is_not_injected_into_answers_without_ids():
    with LoopbackServer(faults=FaultPlan(sequence=("wrong_ids",))) as server:
        post(server, [{"role": "user", "content": "hello"}])
        assert server.injected == {}


def test_disconnect_drops_the_connection_and_bad_requests_are_rejected():
    with LoopbackServer(faults=FaultPlan(sequence=("disconnect",))) as server:
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
            post(server, [{"role": "user", "content": "x"}])
        assert server.injected == {"disconnect": 1}
        with pytest.raises(urllib.error.HTTPError) as not_found:
            post(server, [{"role": "user", "content": "x"}], path="/nowhere")
        assert not_found.value.code == 404
        bad = urllib.request.Request(server.url + "/chat/completions", data=b"{not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as bad_request:
            urllib.request.urlopen(bad, timeout=5)
        assert bad_request.value.code == 400


def test_reset_counts():
    with LoopbackServer(faults=FaultPlan(rate=1.0, kinds=("server_error",))) as server:
        http_error(server, [{"role": "user", "content": "x"}])
        server.reset_counts()
        assert server.requests == 0 and server.injected == {}


def test_serve_runs_in_the_foreground_until_terminated():
    """SIGTERM, not Ctrl-C: a process started in the background (as CI may start the tests) inherits an
    ignored SIGINT. SIGUSR1 dumps every thread's stack, to show where a server that does not stop is stuck."""
    code = (
        "import faulthandler, signal; faulthandler.register(signal.SIGUSR1)\n"
        "from harness.testing.loopback import serve; serve('127.0.0.1', 0, 'fade')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", process.stdout.readline()).group(0)
        request = urllib.request.Request(
            url + "/chat/completions",
            data=json.dumps({"model": "scripted", "messages": rating_messages([0, 1])}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())["choices"][0]["message"]["content"]
        assert json.loads(answer) == {"0": 2, "1": 0}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            process.kill()
            pytest.fail(f"the server did not stop on SIGTERM; its threads:\n{process.communicate()[1][-6000:]}")
    assert code == 0
