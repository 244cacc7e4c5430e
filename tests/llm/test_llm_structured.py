"""Structured answers: the schema builders, llm.structured_output, what reaches the wire and the cache, parse
accounting, and grammar-constrained decoding in the real local model (the slow tests load it)."""

from __future__ import annotations

import json
import math
import sys

import jsonschema
import numpy as np
import pytest
from llm_prompts import rating_messages

from harness.activations.types import ActivatingExample
from harness.config import ExplainConfig, FadeConfig, LLMConfig
from harness.errors import LLMError
from harness.evaluate.fade._clarity import generation_answer
from harness.evaluate.fade.prompts import generation_messages
from harness.evaluate.fade.prompts import rating_messages as fade_rating_messages
from harness.evaluate.fade.rating import rating_answer
from harness.evaluate.scorers import rater_answer
from harness.evaluate.scorers._intruder import intruder_answer, intruder_messages
from harness.evaluate.scorers._judging import judging_messages
from harness.evaluate.scorers._output_detection import detection_messages, set_answer
from harness.evaluate.scorers._simulation import ACTIVATION_SCALE, simulation_messages
from harness.evaluate.scorers.prompts import system_prompt
from harness.explain import FeatureRecord, build_prompt, load_template
from harness.explain._llm_explainer import DESCRIPTION_ANSWER
from harness.llm import (
    ANSWER_KINDS,
    AnswerFormat,
    LLMClient,
    Usage,
    cache_key,
    description_format,
    parse_metrics,
    parse_ratings,
    parse_string_list,
    ratings_format,
    register_local_provider,
    string_list_format,
)
from harness.llm._local_provider import XGRAMMAR_INSTALL, _Grammars
from harness.llm.schemas import DESCRIPTION_MAX_LENGTH
from harness.testing.loopback import fitted_to_schema


def schema_of(response_format: dict) -> dict:
    return response_format["json_schema"]["schema"]


def schema_name(response_format: dict) -> str:
    return response_format["json_schema"]["name"]


def is_valid(instance: object, response_format: dict) -> bool:
    schema = schema_of(response_format)
    return jsonschema.validators.validator_for(schema)(schema).is_valid(instance)


def assert_strict(schema: dict) -> None:
    """OpenAI's strict subset: every object lists all its properties as required and allows no others."""
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False and schema["required"] == list(schema["properties"])
        for inner in schema["properties"].values():
            assert_strict(inner)
    if schema.get("type") == "array":
        assert_strict(schema["items"])


RATINGS = ratings_format("fade_rating", [14, 15, 20], (0, 1, 2))
SAMPLES = string_list_format("fade_generation")
BOUNDED_SAMPLES = string_list_format("fade_generation", max_items=2, max_length=5)
DESCRIPTION = description_format()


@pytest.mark.parametrize(
    ("response_format", "valid", "invalid"),
    [
        (RATINGS, {"14": 0, "15": 2, "20": 1}, {"14": 0, "15": 2}),  # an asked id missing
        (RATINGS, {"14": 0, "15": 2, "20": 1}, {"14": 0, "15": 2, "20": 1, "21": 0}),  # an id not asked
        (RATINGS, {"14": 0, "15": 2, "20": 1}, {"14": 0, "15": 3, "20": 1}),  # off the scale
        (RATINGS, {"14": 0, "15": 2, "20": 1}, {"14": 0, "15": "2", "20": 1}),  # a string, not an integer
        (SAMPLES, {"samples": ["One.", "Two."]}, ["One.", "Two."]),  # strict schemas have an object at the root
        (SAMPLES, {"samples": ["One."]}, {"samples": ["One.", 2]}),
        (SAMPLES, {"samples": ["One."]}, {"samples": []}),  # no sample
        (SAMPLES, {"samples": ["One."]}, {"samples": [""]}),  # an empty sample
        (BOUNDED_SAMPLES, {"samples": ["One.", "Two."]}, {"samples": ["One.", "Two.", "Six."]}),  # too many
        (BOUNDED_SAMPLES, {"samples": ["One.", "Two."]}, {"samples": ["Eleven."]}),  # too long
        (DESCRIPTION, {"description": "the token cat"}, {"description": "x" * (DESCRIPTION_MAX_LENGTH + 1)}),
        (DESCRIPTION, {"description": "the token cat"}, {"description": "cat", "reasoning": "it is"}),
    ],
)
def test_schema_builders_known_answers(response_format, valid, invalid):
    assert is_valid(valid, response_format) and not is_valid(invalid, response_format)


@pytest.mark.parametrize(
    ("response_format", "name"), [(RATINGS, "fade_rating"), (SAMPLES, "fade_generation"), (DESCRIPTION, "explainer")]
)
def test_schemas_are_strict_response_formats_named_by_kind(response_format, name):
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == name and response_format["json_schema"]["strict"] is True
    assert_strict(schema_of(response_format))


def test_rating_keys_come_in_the_asked_order():
    assert list(schema_of(ratings_format("detection", [20, 3, 11], (0, 1)))["properties"]) == ["20", "3", "11"]


def test_an_answer_format_names_a_known_kind():
    with pytest.raises(ValueError, match="unknown answer kind 'ratings'"):
        AnswerFormat("ratings", RATINGS, bool)


def test_the_tolerant_parsers_read_the_schemas_answers():
    assert parse_string_list('{"samples": ["One.", "Two [2]."]}').items == ["One.", "Two [2]."]
    assert parse_string_list('{"samples": ["One.", "Two [2]."]}').ok
    assert parse_string_list('{"samples": ["One.", "Tw').items == ["One."]  # cut by max_tokens: salvaged
    assert parse_ratings('{"14": 0, "15": 2, "20": 1}', [14, 15, 20]).ok


def test_usage_sums_and_flattens_the_answer_counts():
    first = Usage(requests=2, answers={"fade_rating": 2}, parsed={"fade_rating": 1})
    second = Usage(requests=1, answers={"fade_rating": 1, "explainer": 4}, parsed={"explainer": 4})
    total = first + second
    assert total.answers == {"fade_rating": 3, "explainer": 4} and total.parsed == {"fade_rating": 1, "explainer": 4}
    flat = total.as_dict()
    assert flat["requests"] == 3 and flat["answers_fade_rating"] == 3 and flat["parsed_fade_rating"] == 1
    assert {key for key in flat if key.startswith("answers_")} == {f"answers_{kind}" for kind in ANSWER_KINDS}
    assert all(isinstance(value, (int, float)) for value in flat.values())  # tracking sums and logs them
    assert parse_metrics(flat) == {
        "answers_fade_rating": 3.0,
        "parse_rate_fade_rating": pytest.approx(1 / 3),
        "answers_explainer": 4.0,
        "parse_rate_explainer": 1.0,
    }


def test_structured_output_auto_follows_what_the_backend_takes(tmp_path):
    def client(**settings) -> LLMClient:
        return LLMClient(LLMConfig(cache=False, input_cost_per_token=0.0, **settings), tmp_path, progress=False)

    assert client(model="local/smollm2-135m").sends_response_format  # grammar-constrained decoding
    assert client(model="openai/gpt-4o-mini").sends_response_format  # litellm's map: supports response schemas
    assert not client(model="openai/gpt-3.5-turbo").sends_response_format  # litellm's map: it does not
    assert client(model="openai/gpt-3.5-turbo", structured_output="on").sends_response_format
    # a self-hosted OpenAI-compatible server: litellm cannot know it, vLLM & co. take schemas
    assert client(model="openai/my-model", api_base="http://127.0.0.1:9/v1").sends_response_format
    assert not client(model="local/smollm2-135m", structured_output="off").sends_response_format


@pytest.mark.parametrize("structured_output", ["auto", "on", "off"])
def test_the_server_receives_the_schema_unless_off_and_the_answer_fits_it(server, make_config, structured_output):
    ids = [3, 5, 6]
    answer = AnswerFormat("fade_rating", ratings_format("fade_rating", ids, (0, 1, 2)), lambda text: True)
    client = LLMClient(make_config(structured_output=structured_output, cache=False), progress=False)
    [completion] = client.complete_many([rating_messages(ids)], answer_format=answer)
    sent = answer.response_format if structured_output != "off" else None
    assert server.response_formats == [sent]
    assert json.loads(completion.text) == {"3": 0, "5": 2, "6": 0}  # the scripted answer, valid either way
    assert client.usage.answers == {"fade_rating": 1} == client.usage.parsed


def test_cache_keys_tell_constrained_from_unconstrained_answers(server, make_config):
    messages = rating_messages([1, 2])
    params = {"temperature": 0.0, "max_tokens": 64}
    with_schema = {**params, "response_format": ratings_format("fade_rating", [1, 2], (0, 1, 2))}
    assert cache_key({"model": "openai/scripted"}, messages, params) != cache_key(
        {"model": "openai/scripted"}, messages, with_schema
    )
    answer = AnswerFormat("fade_rating", with_schema["response_format"], lambda text: True)
    off = LLMClient(make_config(structured_output="off"), progress=False)
    on = LLMClient(make_config(structured_output="on"), progress=False)  # the same cache file
    off.complete_many([messages], answer_format=answer)
    [fresh] = on.complete_many([messages], answer_format=answer)
    [again] = on.complete_many([messages], answer_format=answer)
    assert not fresh.cached and again.cached and server.requests == 2 and len(on.cache) == 2
    assert on.usage.answers == {"fade_rating": 2}  # an answer from the cache is an answer too


def test_the_loopback_fits_an_answer_to_the_schemas_shape():
    assert fitted_to_schema('["One.", "Two."]', schema_of(SAMPLES)) == '{"samples": ["One.", "Two."]}'
    assert fitted_to_schema('the token "cat"', schema_of(DESCRIPTION)) == '{"description": "the token \\"cat\\""}'
    assert fitted_to_schema('{"14": 0, "15": 2, "20": 1}', schema_of(RATINGS)) == '{"14": 0, "15": 2, "20": 1}'
    assert fitted_to_schema('{"14": 7}', schema_of(RATINGS)) == '{"14": 7}'  # does not fit: left for a test to see


def test_a_response_format_the_local_model_cannot_follow_is_refused_at_once(tmp_path):
    client = LLMClient(LLMConfig(model="local/smollm2-135m", cache=False), tmp_path, progress=False)
    [error] = client.complete_many([rating_messages([1])], response_format={"type": "json_schema", "json_schema": {}})
    assert isinstance(error, LLMError) and "response_format must be" in str(error) and "not retried" in str(error)
    assert "llm.structured_output: off" in str(error)


def feature_record() -> FeatureRecord:
    tokens = ["The", " cat", " sat", " on", " the", " mat", "."]
    activations = np.zeros(len(tokens), dtype=np.float32)
    activations[1] = 5.0
    examples = tuple(ActivatingExample(index, "".join(tokens), tokens, activations, 5.0, 1) for index in range(3))
    return FeatureRecord(feature=0, top_examples=examples)


def every_kind() -> list[tuple[list[dict[str, str]], AnswerFormat]]:
    """One prompt of each kind, built by the harness's own builders, with its answer format."""
    texts = ["The cat sat on the mat.", "Stocks fell sharply today."]
    explain = ExplainConfig.model_validate({"explainer": "llm", "prompt": {"template": "plain"}})
    return [
        (fade_rating_messages("cats", [(101, texts[0]), (102, texts[1])]), rating_answer([101, 102])),
        (
            generation_messages("cats", in_json_object=True),
            generation_answer(FadeConfig(generation_max_samples=3, generation_max_chars=40)),
        ),
        (judging_messages(system_prompt("detection"), "cats", texts), rater_answer("detection", [1, 2], (0, 1))),
        (
            judging_messages(system_prompt("fuzzing"), "cats", ["The <<cat>> sat.", "<<Stocks>> fell."]),
            rater_answer("fuzzing", [1, 2], (0, 1)),
        ),
        (
            simulation_messages(system_prompt("simulation"), "cats", ["The", " cat", " sat", " down"]),
            rater_answer("simulation", range(4), ACTIVATION_SCALE),
        ),
        (
            intruder_messages(system_prompt("intruder"), ["The <<cat>> sat.", "A <<cat>> ran.", "<<Stocks>> fell."]),
            intruder_answer(3),
        ),
        (
            detection_messages(system_prompt("output-detection"), "cats", ["<+0.5>'We': 'cats'", "x", "y"]),
            set_answer(),
        ),
        (
            build_prompt(feature_record(), explain, load_template("plain"), json_answer=True).messages,
            DESCRIPTION_ANSWER,
        ),
    ]


def test_the_scripted_answer_to_every_prompt_kind_validates_against_its_schema(server, make_config):
    conversations, formats = map(list, zip(*every_kind()))
    client = LLMClient(make_config(structured_output="on", cache=False), progress=False)
    answers = client.complete_many(conversations, answer_format=formats)
    for answer_format, answer in zip(formats, answers):
        assert is_valid(json.loads(answer.text), answer_format.response_format), (answer_format.kind, answer.text)
    sent = [answer_format.response_format for answer_format in formats]
    assert sorted(server.response_formats, key=schema_name) == sorted(sent, key=schema_name)  # concurrent: any order
    assert client.usage.answers == dict.fromkeys(ANSWER_KINDS, 1) == client.usage.parsed


@pytest.mark.slow
def test_the_local_model_answers_every_prompt_kind_in_its_schema(tmp_path):
    provider = register_local_provider()
    conversations, formats = map(list, zip(*every_kind()))
    plain = [{"role": "user", "content": "Say hello."}]  # no schema: decoded as before, in the same batch
    client = LLMClient(LLMConfig(model="local/smollm2-135m", cache=False, max_tokens=160), tmp_path, progress=False)
    calls, compiled = provider.generate_calls, provider.grammars.compilations
    greedy = client.complete_many(
        [*conversations, plain], answer_format=[*formats, None], logprobs=True, top_logprobs=3
    )
    assert provider.generate_calls - calls == 1  # nine rows, eight grammars (two alike) and none, one batch
    assert provider.grammars.compilations - compiled <= 7
    compiled = provider.grammars.compilations
    sampled = client.complete_many(conversations, answer_format=formats, temperature=1.0, seed=1)
    assert provider.generate_calls - calls == 2 and provider.grammars.compilations == compiled  # compiled once
    for answer_format, *answers in zip(formats, greedy, sampled):
        for answer in answers:
            assert is_valid(json.loads(answer.text), answer_format.response_format), (answer_format.kind, answer.text)
            assert answer_format.parses(answer.text), (answer_format.kind, answer.text)
    assert client.usage.answers == dict.fromkeys(ANSWER_KINDS, 2) == client.usage.parsed
    assert not greedy[-1].text.startswith("{")
    for answer in greedy:
        assert "".join(token for token, _ in answer.logprobs).strip() == answer.text
        assert all(math.isfinite(value) for _, alternatives in answer.logprobs for value in alternatives.values())
    # Log-probabilities are the model's, before the grammar's mask: unconstrained, the model would not open
    # its rating answer with "{" (greedy decoding then takes the likeliest token), so "{" is not the likeliest.
    first_token, alternatives = greedy[0].logprobs[0]
    assert first_token.startswith("{") and max(alternatives, key=alternatives.get) != first_token


@pytest.mark.slow
def test_without_xgrammar_a_schema_request_says_how_to_install_it(tmp_path, monkeypatch):
    provider = register_local_provider()
    monkeypatch.setattr(provider, "grammars", _Grammars())  # nothing compiled yet in this process
    monkeypatch.setitem(sys.modules, "xgrammar", None)  # what an environment without the package imports
    client = LLMClient(LLMConfig(model="local/smollm2-135m", cache=False, max_tokens=8), tmp_path, progress=False)
    [error] = client.complete_many([rating_messages([1])], answer_format=rating_answer([1]))
    assert isinstance(error, LLMError) and XGRAMMAR_INSTALL in str(error) and "not retried" in str(error)
