"""The LLM scorers against a real loopback server through the real LLM layer: known answers on planted
features (true description vs the shuffled control), edge cases, one concurrent cached batch per scorer,
robust parsing under malformed and truncated answers, and failures that say what went wrong."""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter

import jsonschema
import numpy as np
import pytest
from scorer_records import TOPICS, example, shuffled_descriptions, true_descriptions
from scorer_responders import KeywordRater

from harness.activations import ActivatingExample
from harness.config import ScorersConfig
from harness.errors import ConfigError, EvaluationError, LLMError
from harness.evaluate.scorers import SCORERS, least_active_needed, rater_answer, run_scorers
from harness.evaluate.scorers.prompts import system_prompt
from harness.explain import FeatureRecord
from harness.score_names import Reason
from harness.testing.loopback import FaultPlan, LoopbackServer

LLM_SCORERS = ["detection", "fuzzing", "simulation"]
FEATURES = list(range(len(TOPICS)))


def score(name, records, descriptions, client, config=None):
    return SCORERS.get(name)().score(records, descriptions, client, config or ScorersConfig(), progress=False)


@pytest.mark.parametrize("name", LLM_SCORERS)
def test_true_description_beats_the_shuffled_control_on_every_feature(name, planted_records, make_client):
    client = make_client()
    true = score(name, planted_records, true_descriptions(FEATURES), client).set_index("feature")
    shuffled = score(name, planted_records, shuffled_descriptions(FEATURES), client).set_index("feature")
    assert list(true.index) == FEATURES
    assert true[f"{name}_reason"].isna().all() and shuffled[f"{name}_reason"].isna().all()
    assert (true[name] > shuffled[name]).all()
    if name == "simulation":  # predicted 10 on the planted token, whose true value varies from 10 to 5.6
        assert (true[name] > 0.95).all() and (shuffled[name] < 0.05).all()
        assert (true["simulation_unanswered"] == 0).all() and (true["simulation_tokens"] > 50).all()
    else:  # the keyword rater is a perfect reader of the true description
        assert (true[name] == 1.0).all() and (true[f"{name}_f1"] == 1.0).all()
        assert (shuffled[name] <= 0.5).all()
        assert (true[f"{name}_judged"] == 20).all() and (true[f"{name}_unanswered"] == 0).all()
        # The loopback server reports a plain answer's tokens as certain: AUROC ranks by the written values.
        assert (true[f"{name}_auroc"] == 1.0).all()


def test_fuzzing_with_wrongly_highlighted_activating_examples(planted_records, make_client):
    config = ScorersConfig(fuzzing={"wrong_examples": "activating"})
    client = make_client()
    true = score("fuzzing", planted_records, true_descriptions(FEATURES), client, config)
    shuffled = score("fuzzing", planted_records, shuffled_descriptions(FEATURES), client, config)
    assert (true["fuzzing"] == 1.0).all()
    assert (shuffled["fuzzing"] == 0.5).all()  # other topics never appear in these texts: all "wrong"


def edge_records() -> list[FeatureRecord]:
    zeros = tuple(example(100 + i, f"Nothing fires in sentence {i}.", None, 0.0) for i in range(4))
    only_activating = tuple(example(200 + i, f"The {TOPICS[0]} barked {i} times.", TOPICS[0], 5.0) for i in range(4))
    return [
        FeatureRecord(feature=10, top_examples=()),
        FeatureRecord(feature=11, top_examples=zeros),
        FeatureRecord(feature=12, top_examples=only_activating),
        FeatureRecord(feature=13, top_examples=only_activating),
    ]


@pytest.mark.parametrize("name", [*LLM_SCORERS, "embedding"])
def test_edge_cases_give_null_with_a_reason_and_no_call(name, rater, make_client):
    descriptions = {10: "dogs", 11: "dogs", 12: float("nan"), 13: "  "}
    table = score(name, edge_records(), descriptions, make_client()).set_index("feature")
    assert table[name].isna().all()
    assert table.loc[10, f"{name}_reason"] == Reason.NO_ACTIVATING_EXAMPLES  # no examples at all
    assert table.loc[11, f"{name}_reason"] == Reason.NO_ACTIVATING_EXAMPLES  # all-zero activations
    assert table.loc[12, f"{name}_reason"] == Reason.NO_DESCRIPTION
    assert table.loc[13, f"{name}_reason"] == Reason.NO_DESCRIPTION
    assert rater.requests == 0


@pytest.mark.parametrize("name", ["detection", "fuzzing"])
def test_a_missing_kind_of_example_gives_null_with_a_reason(name, rater, make_client):
    only_activating = FeatureRecord(feature=12, top_examples=edge_records()[2].top_examples)
    table = score(name, [only_activating], {12: f'the word "{TOPICS[0]}"'}, make_client())
    assert table[name].isna().all() and table[f"{name}_reason"].tolist() == [Reason.NO_NON_ACTIVATING_EXAMPLES]
    assert rater.requests == 0


def test_simulation_of_constant_activations_is_null_with_a_reason(make_client):
    flat = tuple(
        ActivatingExample(300 + i, "one two three", ["one", " two", " three"], np.full(3, 4.0, np.float32), 4.0, 0)
        for i in range(3)
    )
    table = score("simulation", [FeatureRecord(feature=20, top_examples=flat)], {20: "numbers"}, make_client())
    assert table["simulation_reason"].tolist() == [Reason.CONSTANT_ACTIVATIONS]


def test_one_concurrent_batch_per_scorer(planted_records, rater, make_client):
    rater.faults = FaultPlan(latency_s=0.5)
    config = ScorersConfig(detection={"batch_size": 5})
    start = time.perf_counter()
    table = score("detection", planted_records, true_descriptions(FEATURES), make_client(), config)
    elapsed = time.perf_counter() - start
    calls = len(FEATURES) * math.ceil(config.detection.num_examples / config.detection.batch_size)
    assert rater.requests == calls == 16
    assert elapsed < calls * 0.5 / 3, f"{calls} calls of 0.5 s took {elapsed:.1f} s: not concurrent"
    assert (table["detection"] == 1.0).all()


def test_answers_come_from_the_llm_cache_on_a_rerun(planted_records, rater, make_client):
    config = ScorersConfig(enabled=LLM_SCORERS)
    first = run_scorers(planted_records, true_descriptions(FEATURES), config, make_client(), progress=False)
    asked = rater.requests
    client = make_client()  # a new client (as a resumed run makes) on the same cache file
    again = run_scorers(planted_records, true_descriptions(FEATURES), config, client, progress=False)
    assert rater.requests == asked
    assert client.usage.cache_hits == client.usage.requests == asked
    assert first.equals(again)


def test_log_probabilities_carry_what_the_written_answers_do_not(planted_records, make_client, tmp_path):
    """A hedged rater writes one value everywhere; only its log-probabilities (server -> litellm -> client
    -> cache -> scorer) tell the planted features apart: AUROC 1 for detection and fuzzing, a near-perfect
    simulation from expected values, and the same from the cache."""
    with LoopbackServer(KeywordRater(hedged=True)) as hedged:
        config = ScorersConfig(enabled=LLM_SCORERS)
        first = run_scorers(
            planted_records, true_descriptions(FEATURES), config, make_client(api_base=hedged.url), progress=False
        )
        asked = hedged.requests
        again = run_scorers(
            planted_records, true_descriptions(FEATURES), config, make_client(api_base=hedged.url), progress=False
        )
        assert hedged.requests == asked and first.equals(again)
        off = config.model_copy(
            update={name: getattr(config, name).model_copy(update={"logprobs": "off"}) for name in LLM_SCORERS}
        )
        plain = run_scorers(
            planted_records, true_descriptions(FEATURES), off, make_client(api_base=hedged.url), progress=False
        )
    for name in ("detection", "fuzzing"):
        assert (first[name] == 0.5).all()  # "1" written for every example
        assert (first[f"{name}_auroc"] == 1.0).all()
        assert plain[f"{name}_auroc"].isna().all() and (plain[name] == 0.5).all()
    assert (first["simulation"] > 0.9).all()  # expected values 9 on the planted token, 1 elsewhere
    assert first["simulation_reason"].isna().all()
    assert (plain["simulation"] == 0.0).all()  # 5 written on every token predicts none of the variation


def test_chatty_malformed_and_truncated_answers_give_the_same_scores(planted_records, make_client, tmp_path):
    config = ScorersConfig(enabled=LLM_SCORERS)
    clean = run_scorers(planted_records, true_descriptions(FEATURES), config, make_client(), progress=False)
    faults = FaultPlan(rate=0.3, kinds=("malformed", "truncated"), seed=3)
    with LoopbackServer(KeywordRater(chatty=True), faults) as server:
        client = make_client(api_base=server.url, cache_path=str(tmp_path / "faulty.sqlite"))
        faulty = run_scorers(planted_records, true_descriptions(FEATURES), config, client, progress=False)
        assert server.injected.get("malformed", 0) + server.injected.get("truncated", 0) > 5
    assert client.usage.invalid_answers > 5  # rejected by the validators and asked again
    assert faulty.equals(clean)


def test_answers_that_never_parse_give_null_without_crashing(planted_records, make_client):
    with LoopbackServer(lambda messages: "I'd rather not say.") as server:
        client = make_client(api_base=server.url, max_invalid_retries=1)
        table = run_scorers(
            planted_records[:2], true_descriptions([0, 1]), ScorersConfig(enabled=LLM_SCORERS), client, progress=False
        )
    for name in LLM_SCORERS:
        assert table[name].isna().all()
        assert (table[f"{name}_reason"] == Reason.NO_VALID_ANSWERS).all()
    assert (table["detection_unanswered"] == 20).all()


def test_partly_answered_batches_are_scored_on_what_was_answered(planted_records, make_client):
    def first_two_only(messages):
        answer = KeywordRater()(messages)
        return "{" + ", ".join(answer.strip("{}").split(", ")[:2]) + "}"

    with LoopbackServer(first_two_only) as server:
        client = make_client(api_base=server.url, max_invalid_retries=0)
        table = score("detection", planted_records, true_descriptions(FEATURES), client)
    assert (table["detection_judged"] == 8).all() and (table["detection_unanswered"] == 12).all()
    assert table["detection"].notna().sum() + (table["detection_reason"] == "single_class_answered").sum() == 4


def test_every_call_failing_raises_an_llm_error(planted_records, make_client):
    with LoopbackServer(KeywordRater(), FaultPlan(rate=1.0, kinds=("auth_error",))) as server:
        client = make_client(api_base=server.url)
        with pytest.raises(LLMError, match=r"detection \(4 features\): none of the 16 rater calls succeeded.*401"):
            score("detection", planted_records, true_descriptions(FEATURES), client)


@pytest.mark.parametrize("name", LLM_SCORERS)
def test_a_feature_whose_calls_failed_is_llm_failed_never_a_data_reason(name, planted_records, make_client):
    """The backend fails (HTTP 500, no retries) on the first call about feature 2's description: feature 2
    says llm_failed, whatever its answers that did come would have given; the others are scored as ever
    (issue #30)."""
    rater, description, failed = KeywordRater(), true_descriptions([2])[2], []

    def failing_once(messages):
        if any(description in str(message.get("content")) for message in messages) and not failed:
            failed.append(True)
            raise RuntimeError("backend down")
        return rater(messages)

    with LoopbackServer(failing_once) as server:
        client = make_client(api_base=server.url, max_retries=0)
        table = score(name, planted_records, true_descriptions(FEATURES), client).set_index("feature")
    assert table.loc[2, f"{name}_reason"] == Reason.LLM_FAILED and math.isnan(table.loc[2, name])
    others = table.drop(2)
    assert others[f"{name}_reason"].isna().all() and others[name].notna().all()


def test_run_scorers_merges_enabled_scorers_on_feature(planted_records, make_client):
    config = ScorersConfig(enabled=["simulation", "detection"])
    descriptions = true_descriptions([2, 0])
    table = run_scorers(planted_records, descriptions, config, make_client(), progress=False)
    assert table["feature"].tolist() == [0, 2]  # record order, described features only
    assert list(table.columns[:4]) == ["feature", "simulation", "simulation_reason", "simulation_tokens"]
    assert {"detection", "detection_reason", "detection_f1", "detection_auroc"} <= set(table.columns)
    assert run_scorers(planted_records, descriptions, ScorersConfig(), None).columns.tolist() == ["feature"]


def test_least_active_needed_covers_every_enabled_scorer():
    config = ScorersConfig(enabled=["embedding", "simulation"], embedding={"num_examples": 30})
    assert least_active_needed(config) == 3 * 15
    assert least_active_needed(ScorersConfig()) == 0


def test_run_scorers_input_errors(planted_records):
    with pytest.raises(ConfigError, match=r"scorers.enabled: unknown scorer 'detecton'. Did you mean 'detection'"):
        run_scorers(planted_records, {0: "x"}, ScorersConfig(enabled=["detecton"]), None)
    with pytest.raises(ConfigError, match=r"\['fuzzing'\] need an LLM client; make one from fade.rater"):
        run_scorers(planted_records, {0: "x"}, ScorersConfig(enabled=["fuzzing"]), None)
    with pytest.raises(EvaluationError, match=r"without activation records: \[99\]"):
        run_scorers(planted_records, {0: "x", 99: "y"}, ScorersConfig(), None)


def test_a_backend_refusing_log_probabilities_says_how_to_go_on_without_them(planted_records, make_client):
    with LoopbackServer(KeywordRater(), accepts_logprobs=False) as refusing:
        client = make_client(api_base=refusing.url)
        with pytest.raises(LLMError, match=r"log-probabilities.*scorers\.<name>\.logprobs: off"):
            score(
                "detection",
                planted_records,
                true_descriptions(FEATURES),
                client,
                ScorersConfig(detection={"logprobs": "on"}),
            )
        without = score(
            "detection",
            planted_records,
            true_descriptions(FEATURES),
            client,
            ScorersConfig(detection={"logprobs": "off"}),
        )
    assert (without["detection"] == 1.0).all() and without["detection_auroc"].isna().all()


@pytest.mark.parametrize("structured_output", ["auto", "on", "off"])
def test_every_rater_call_carries_its_scorers_schema_unless_off(structured_output, planted_records, rater, make_client):
    client = make_client(structured_output=structured_output)
    config = ScorersConfig(enabled=LLM_SCORERS)
    table = run_scorers(planted_records[:2], true_descriptions([0, 1]), config, client, progress=False)
    assert (table["detection"] == 1.0).all() and (table["simulation"] > 0.95).all()  # parsed either way
    usage = client.usage
    assert usage.parsed == usage.answers and sum(usage.answers.values()) == rater.requests
    formats = rater.response_formats
    if structured_output == "off":
        assert formats == [None] * rater.requests
        return
    assert Counter(format_["json_schema"]["name"] for format_ in formats) == Counter(usage.answers)
    for format_ in formats:
        keys = format_["json_schema"]["schema"]["required"]
        first = 0 if format_["json_schema"]["name"] == "simulation" else 1  # token numbers start at 0
        assert keys == [str(number) for number in range(first, first + len(keys))]


@pytest.mark.parametrize(("name", "allowed"), [("detection", (0, 1)), ("fuzzing", (0, 1)), ("simulation", range(11))])
def test_each_prompts_example_answer_is_what_its_schema_allows(name, allowed):
    example = json.loads(re.search(r"for example (\{.*?\})", system_prompt(name)).group(1))
    schema = rater_answer(name, [int(key) for key in example], allowed).response_format["json_schema"]["schema"]
    jsonschema.validate(example, schema)
