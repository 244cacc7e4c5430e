"""The LLM explainer through the real LLM layer (litellm over HTTP) against the loopback server."""

from __future__ import annotations

import json
import socket
import threading

import jsonschema
import pytest

from harness.config import ExplainConfig
from harness.errors import ConfigError, LLMError
from harness.explain import build_prompt, generate_descriptions, load_template
from harness.explain._llm_explainer import JSON_ANSWER_NOTE
from harness.llm import description_format
from harness.llm.client import LLMClient
from harness.testing.loopback import FaultPlan, LoopbackServer

KEY_ENV = "EXPLAIN_TEST_LOOPBACK_KEY"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "loopback-test-key")
    with LoopbackServer() as running:
        yield running


def explain_config(server: LoopbackServer, tmp_path, **sections) -> ExplainConfig:
    llm = {
        "model": "openai/scripted",
        "api_base": server.url,
        "api_key_env": KEY_ENV,
        "cache_path": str(tmp_path / "llm-cache.sqlite"),
        "max_retries": 0,
        "input_cost_per_token": 1e-6,
        "output_cost_per_token": 2e-6,
        **sections.pop("llm", {}),
    }
    return ExplainConfig.model_validate({"explainer": "llm", "llm": llm, **sections})


def client_for(config: ExplainConfig, tmp_path) -> LLMClient:
    return LLMClient(config.llm, cache_dir=tmp_path, progress=False)


class Recorder:
    """Responder that keeps every conversation it was sent and answers with a fixed description."""

    def __init__(self, answer: str = "[EXPLANATION]: recorded") -> None:
        self.answer = answer
        self.seen: list[list[dict]] = []
        self.lock = threading.Lock()

    def __call__(self, messages):
        with self.lock:
            self.seen.append(messages)
        return self.answer


def test_the_server_receives_exactly_the_built_prompts(monkeypatch, tmp_path, make_planted_record):
    monkeypatch.setenv(KEY_ENV, "loopback-test-key")
    recorder = Recorder()
    records = [make_planted_record(feature, f"tok{feature}") for feature in range(4)]
    with LoopbackServer(responder=recorder) as server:
        config = explain_config(server, tmp_path, selection={"num_examples": 6}, display={"mode": "values"})
        table = generate_descriptions(records, config, client_for(config, tmp_path))
    # structured_output auto: the loopback server takes schemas, so the prompts ask for the JSON answer
    expected = [build_prompt(record, config, load_template("delphi"), json_answer=True) for record in records]
    assert sorted(map(repr, recorder.seen)) == sorted(repr(prompt.messages) for prompt in expected)
    for prompt in expected:
        assert prompt.messages[-1]["content"].count("<start>") == 6
    assert table["description"].tolist() == ["recorded"] * 4
    assert table["prompt_hash"].tolist() == [prompt.prompt_hash for prompt in expected]
    assert table["example_ids"].tolist() == [list(prompt.example_ids) for prompt in expected]
    assert (table["prompt_tokens"] > 0).all() and (table["completion_tokens"] == 3).all()  # {"description": ...}
    assert table["cost_usd"].tolist() == pytest.approx(
        [row.prompt_tokens * 1e-6 + row.completion_tokens * 2e-6 for row in table.itertuples()]
    )


@pytest.mark.parametrize("structured_output", ["auto", "on", "off"])
def test_the_description_schema_is_sent_unless_off(server, tmp_path, make_planted_record, structured_output):
    records = [make_planted_record(feature, "zebra") for feature in range(3)]
    config = explain_config(server, tmp_path, llm={"structured_output": structured_output})
    client = client_for(config, tmp_path)
    table = generate_descriptions(records, config, client)
    assert table["description"].tolist() == ['the token "zebra"'] * 3  # parsed either way
    sent = None if structured_output == "off" else description_format("explainer")
    assert server.response_formats == [sent] * 3
    assert client.usage.answers == {"explainer": 3} == client.usage.parsed


def test_the_json_answer_note_asks_for_what_the_schema_allows(make_planted_record, tmp_path):
    example = json.loads(JSON_ANSWER_NOTE[JSON_ANSWER_NOTE.index("{") :])
    jsonschema.validate(example, description_format()["json_schema"]["schema"])
    config = ExplainConfig.model_validate({"explainer": "llm"})
    plain, asking = (
        build_prompt(make_planted_record(1, "zebra"), config, load_template("delphi"), json_answer=json_answer)
        for json_answer in (False, True)
    )
    assert asking.messages[-1]["content"] == plain.messages[-1]["content"] + JSON_ANSWER_NOTE
    assert asking.prompt_hash != plain.prompt_hash


def test_the_scripted_explainer_recovers_the_planted_token(server, tmp_path, make_planted_record):
    planted = {11: "zebra", 12: "quokka", 13: "walrus"}
    records = [make_planted_record(feature, token) for feature, token in planted.items()]
    config = explain_config(server, tmp_path, selection={"num_examples": 5})
    table = generate_descriptions(records, config, client_for(config, tmp_path))
    assert dict(zip(table["feature"], table["description"])) == {f: f'the token "{t}"' for f, t in planted.items()}
    assert set(table["explainer"]) == {"llm"} and table["error"].isna().all()


def test_many_features_run_concurrently_and_a_second_run_is_cached(monkeypatch, tmp_path, make_planted_record):
    monkeypatch.setenv(KEY_ENV, "loopback-test-key")
    records = [make_planted_record(feature, "zebra") for feature in range(24)]
    slow = FaultPlan(latency_s=0.15)
    with LoopbackServer(responder=lambda messages: "[EXPLANATION]: slow answer", faults=slow) as server:
        config = explain_config(server, tmp_path, llm={"concurrency": 8})
        client = client_for(config, tmp_path)
        first = generate_descriptions(records, config, client)
        assert server.requests == 24
        assert 2 <= server.peak_in_flight <= 8  # several requests were in flight at once, never more than the bound
        server.reset_counts()
        again = client_for(config, tmp_path)  # a fresh client: only the sqlite cache is shared
        second = generate_descriptions(records, config, again)
        assert server.requests == 0
    assert again.usage.cache_hits == 24 and again.usage.calls == 0
    assert second["description"].tolist() == first["description"].tolist()
    assert second["settings_hash"].tolist() == first["settings_hash"].tolist()
    assert (first["cost_usd"] > 0).all() and (second["cost_usd"] == 0).all()  # cost = spent by this run


def test_candidates_are_separate_requests_and_one_is_chosen(monkeypatch, tmp_path, make_planted_record):
    monkeypatch.setenv(KEY_ENV, "loopback-test-key")
    answers = iter(["[EXPLANATION]: stripes on a zebra", "[EXPLANATION]: zebra", "[EXPLANATION]: Zebra."])
    record = make_planted_record(1, "zebra")
    with LoopbackServer(responder=lambda messages: next(answers)) as server:
        chosen = {}
        for rule in ("first", "shortest", "most-common"):
            config = explain_config(server, tmp_path, prompt={"num_candidates": 3, "choose": rule})
            table = generate_descriptions([record], config, client_for(config, tmp_path))
            chosen[rule] = table.loc[0, "description"]
        assert server.requests == 3  # the later rules reuse the three cached candidates
    assert chosen == {"first": "stripes on a zebra", "shortest": "zebra", "most-common": "zebra"}


def test_unusable_answers_become_rows_with_an_error_and_failed_calls_an_error(
    monkeypatch, tmp_path, make_planted_record
):
    monkeypatch.setenv(KEY_ENV, "loopback-test-key")
    records = [make_planted_record(feature, f"tok{feature}") for feature in range(3)]

    def answer(messages):
        return "[EXPLANATION]:   " if "tok1" in messages[-1]["content"] else "[EXPLANATION]: fine"

    with LoopbackServer(responder=answer) as server:
        config = explain_config(server, tmp_path, llm={"max_invalid_retries": 1})
        table = generate_descriptions(records, config, client_for(config, tmp_path))
        assert server.requests == 4  # the empty answer was asked again once
        assert table["description"].tolist() == ["fine", None, "fine"]
        assert "no usable description" in table.loc[1, "error"]

        # calls failing for every feature are one error naming the backend, not a table of empty rows
        server.faults = FaultPlan(rate=1.0, kinds=("server_error",))
        failing = explain_config(server, tmp_path, llm={"cache": False})
        with pytest.raises(LLMError, match="failed on all 3 features.*HTTP 500"):
            generate_descriptions(records, failing, client_for(failing, tmp_path))


def test_the_client_must_match_the_variant(server, tmp_path, make_planted_record):
    config = explain_config(server, tmp_path)
    other = client_for(explain_config(server, tmp_path, llm={"temperature": 0.9}), tmp_path)
    with pytest.raises(ConfigError, match="differ from explain.llm"):
        generate_descriptions([make_planted_record(1, "zebra")], config, other)
    with pytest.raises(ConfigError, match="needs an LLM client"):
        generate_descriptions([make_planted_record(1, "zebra")], config, None)


def test_an_unreachable_backend_is_an_error_naming_it(monkeypatch, tmp_path, make_planted_record):
    monkeypatch.setenv(KEY_ENV, "loopback-test-key")
    with socket.socket() as closed:  # a port nothing listens on: every connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    llm = {
        "model": "openai/scripted",
        "api_base": f"http://127.0.0.1:{port}/v1",
        "api_key_env": KEY_ENV,
        "max_retries": 0,
        "cache": False,
    }
    config = ExplainConfig.model_validate({"explainer": "llm", "llm": llm})
    records = [make_planted_record(feature, f"tok{feature}") for feature in range(3)]
    with pytest.raises(LLMError, match=rf"failed on all 3 features.*127\.0\.0\.1:{port}"):
        generate_descriptions(records, config, client_for(config, tmp_path))
