"""The intruder scorer against a real loopback server through litellm, and with the real embedding rater:
known answers on planted features (coherent ones well above chance, random mixtures at chance), null with a
reason where it cannot score, no dependence on the description (so every variant's calls come from the
LLM cache), and its place in tracked runs and on the leaderboard."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import mlflow
import numpy as np
import pytest
from scorer_records import (
    SENTENCES,
    TOPICS,
    example,
    shuffled_descriptions,
    tokens_of,
    true_descriptions,
)
from scorer_responders import KeywordRater

from harness.activations import ActivatingExample
from harness.config import ScorersConfig, parse_config, result_fingerprint
from harness.errors import ConfigError
from harness.evaluate.scorers import SCORERS, least_active_needed, run_scorers
from harness.evaluate.scorers._intruder import intruder_answer, intruder_trials, read_choice
from harness.evaluate.scorers.prompts import system_prompt
from harness.explain import FeatureRecord
from harness.score_names import Reason
from harness.testing.loopback import FaultPlan, LoopbackServer
from harness.testing.responders import INTRUDER_MARKER

FEATURES = list(range(len(TOPICS)))
CHANCE = 1 / 5  # 4 activating examples and 1 intruder per trial (the defaults)
# A random mixture's accuracy over 12 features x 10 trials: chance +- 0.1 (about 2.5 standard deviations).
CHANCE_TOLERANCE = 0.1
NOUNS = ["lamp", "tax", "cloud", "violin", "harbor", "fever", "ladder", "comet", "onion", "statue", "jacket", "mirror"]


def score(records, descriptions, client, config=None):
    return SCORERS.get("intruder")().score(records, descriptions, client, config or ScorersConfig(), progress=False)


def random_sentence(rng: np.random.Generator) -> str:
    return SENTENCES[rng.integers(len(SENTENCES))].format(k=NOUNS[rng.integers(len(NOUNS))])


def random_mixture_record(feature: int, num_activating: int = 15, num_quiet: int = 15) -> FeatureRecord:
    """A feature with no pattern: it fires on one random token of random sentences, and its non-activating
    examples are more sentences of the same kind. Nothing tells an intruder apart."""
    rng = np.random.default_rng([7, feature])
    top = []
    for i in range(num_activating):
        text = random_sentence(rng)
        values = np.zeros(len(tokens_of(text)), dtype=np.float32)
        position = int(rng.integers(len(values)))
        values[position] = rng.uniform(4.0, 10.0)
        sample = 5000 + 100 * feature + i
        top.append(ActivatingExample(sample, text, tokens_of(text), values, float(values[position]), position))
    quiet = [example(6000 + 100 * feature + i, random_sentence(rng), None, 0.0) for i in range(num_quiet)]
    return FeatureRecord(feature=100 + feature, top_examples=tuple(top), pool=tuple(quiet))


@pytest.fixture(scope="module")
def mixtures() -> list[FeatureRecord]:
    return [random_mixture_record(feature) for feature in range(12)]


class Recording:
    """A responder that remembers every prompt it answered."""

    def __init__(self, responder) -> None:
        self.responder = responder
        self.prompts: list[str] = []

    def __call__(self, messages: list[dict[str, Any]]):
        self.prompts.append(json.dumps(messages))
        return self.responder(messages)


@pytest.fixture
def recording() -> Iterator[tuple[LoopbackServer, Recording]]:
    responder = Recording(KeywordRater())
    with LoopbackServer(responder) as server:
        yield server, responder


def test_coherent_features_score_far_above_chance_and_random_mixtures_at_chance(planted_records, mixtures, make_client):
    client = make_client()
    coherent = score(planted_records, true_descriptions(FEATURES), client)
    # The scripted rater spots the example whose marked token the others do not share: every time here,
    # since the planted features mark their topic word and an intruder's random marks never fall on it.
    assert coherent["intruder_reason"].isna().all()
    assert (coherent["intruder"] == 1.0).all()
    assert (coherent["intruder_trials"] == 10).all() and (coherent["intruder_unanswered"] == 0).all()
    assert (coherent["intruder_chance"] == CHANCE).all()
    mixed = score(mixtures, {record.feature: "anything" for record in mixtures}, client)
    assert mixed["intruder_reason"].isna().all() and (mixed["intruder_trials"] == 10).all()
    assert abs(mixed["intruder"].mean() - CHANCE) < CHANCE_TOLERANCE, mixed["intruder"].tolist()
    assert mixed["intruder"].max() < 0.8  # no random feature looks coherent


def test_unmarked_examples_are_judged_by_their_words(planted_records, mixtures, make_client):
    """With `highlight: false` the scripted rater picks the example sharing the fewest words with the others:
    the planted features' topic word makes that the intruder more often than not, in sentence frames that
    the intruder shares too; a random mixture stays at chance."""
    config = ScorersConfig(intruder={"highlight": False})
    client = make_client()
    coherent = score(planted_records, true_descriptions(FEATURES), client, config)
    mixed = score(mixtures, dict.fromkeys([record.feature for record in mixtures], "d"), client, config)
    assert coherent["intruder_reason"].isna().all() and mixed["intruder_reason"].isna().all()
    assert coherent["intruder"].mean() > 2 * CHANCE and (coherent["intruder"] > CHANCE).all(), coherent[
        "intruder"
    ].tolist()
    assert abs(mixed["intruder"].mean() - CHANCE) < CHANCE_TOLERANCE, mixed["intruder"].tolist()


def test_trials_show_activating_examples_of_one_quantile_and_the_intruder_anywhere(mixtures):
    settings = ScorersConfig().intruder
    record = mixtures[0]
    trials = intruder_trials(record, settings)
    assert len(trials) == settings.num_trials
    assert [trial.quantile for trial in trials] == [i % 3 for i in range(10)]  # 15 examples fill 3 bins of 5
    positions = [trial.intruder for mix in mixtures for trial in intruder_trials(mix, settings)]
    assert set(positions) == set(range(5))  # every position is used
    quiet_texts = {example.text for example in record.pool}
    for trial in trials:
        assert len(trial.texts) == 5
        assert trial.plain[trial.intruder] in quiet_texts
        assert all(text.count("<<") >= 1 for text in trial.texts)  # the intruder is marked like the others
    unmarked = intruder_trials(record, settings.model_copy(update={"highlight": False}))
    assert [trial.plain for trial in unmarked] == [trial.plain for trial in trials]  # same draws
    assert all(trial.texts == trial.plain for trial in unmarked)


def test_the_score_does_not_depend_on_the_description_and_every_variant_hits_the_cache(
    planted_records, recording, make_client
):
    server, responder = recording
    variants = [true_descriptions(FEATURES), shuffled_descriptions(FEATURES), {0: None, 1: "", 2: "zebras", 3: "x"}]
    first = score(planted_records, variants[0], make_client(api_base=server.url))
    asked = server.requests
    assert asked == 40  # 4 features x 10 trials, one call each
    for descriptions in variants[1:]:
        client = make_client(api_base=server.url)  # a new client, as another variant's run makes
        again = score(planted_records, descriptions, client)
        assert again.equals(first)
        assert client.usage.cache_hits == client.usage.requests == asked
    assert server.requests == asked
    for prompt in responder.prompts:  # no description reaches the rater
        assert "Description" not in prompt and "the word" not in prompt and "zebras" not in prompt


def test_a_feature_scores_the_same_alone_or_with_other_features(planted_records, mixtures, make_client):
    client = make_client()
    records = [*planted_records, *mixtures]
    together = score(records, dict.fromkeys([record.feature for record in records], "d"), client)
    alone = score([mixtures[3]], {mixtures[3].feature: "d"}, client)
    row = together.set_index("feature").loc[[mixtures[3].feature]].reset_index()
    assert alone.equals(row)
    reseeded = score([mixtures[3]], {mixtures[3].feature: "d"}, client, ScorersConfig(intruder={"seed": 1}))
    assert intruder_trials(mixtures[3], ScorersConfig(intruder={"seed": 1}).intruder) != intruder_trials(
        mixtures[3], ScorersConfig().intruder
    )
    assert reseeded["intruder_reason"].isna().all()


def edge_records() -> list[FeatureRecord]:
    zeros = tuple(example(100 + i, f"Nothing fires in sentence {i}.", None, 0.0) for i in range(4))
    dogs = tuple(example(200 + i, f"The {TOPICS[0]} barked {i} times.", TOPICS[0], 5.0) for i in range(6))
    quiet = tuple(example(300 + i, f"The {TOPICS[1]} ran dry in year {i}.", None, 0.0) for i in range(3))
    return [
        FeatureRecord(feature=10, top_examples=()),
        FeatureRecord(feature=11, top_examples=zeros),
        FeatureRecord(feature=12, top_examples=dogs[:3], pool=quiet),  # 3 activating; a trial shows 4
        FeatureRecord(feature=13, top_examples=dogs),  # nothing to be the intruder
        FeatureRecord(feature=14, top_examples=dogs, pool=quiet),  # scored: 3 intruders, 3 trials
    ]


def test_too_few_examples_give_null_with_a_reason_and_no_call(rater, make_client):
    table = score(edge_records()[:4], dict.fromkeys(range(10, 14), "dogs"), make_client()).set_index("feature")
    assert table["intruder"].isna().all()
    assert table["intruder_reason"].to_dict() == {
        10: Reason.NO_ACTIVATING_EXAMPLES,
        11: Reason.NO_ACTIVATING_EXAMPLES,
        12: Reason.TOO_FEW_ACTIVATING_EXAMPLES,
        13: Reason.NO_NON_ACTIVATING_EXAMPLES,
    }
    assert rater.requests == 0
    fewer = score(edge_records()[4:], {14: None}, make_client())  # a missing description does not matter
    assert fewer["intruder_trials"].tolist() == [3] and fewer["intruder"].tolist() == [1.0]
    assert rater.requests == 3


@pytest.mark.parametrize("answer", ["I'd rather not say.", '{"intruder": 9}', '{"intruder": 0}', "[]"])
def test_answers_that_never_parse_give_null_without_crashing(answer, planted_records, make_client):
    with LoopbackServer(lambda messages: answer) as server:
        client = make_client(api_base=server.url, max_invalid_retries=1)
        table = score(planted_records[:2], true_descriptions([0, 1]), client)
        assert server.requests == 2 * 10 * 2  # every trial asked again once
    assert table["intruder"].isna().all()
    assert (table["intruder_reason"] == Reason.NO_VALID_ANSWERS).all()
    assert (table["intruder_unanswered"] == 10).all() and (table["intruder_trials"] == 0).all()


def test_chatty_malformed_and_truncated_answers_give_the_same_scores(planted_records, make_client, tmp_path):
    clean = score(planted_records, true_descriptions(FEATURES), make_client())
    faults = FaultPlan(rate=0.3, kinds=("malformed", "truncated"), seed=3)
    with LoopbackServer(KeywordRater(chatty=True), faults) as server:
        client = make_client(api_base=server.url, cache_path=str(tmp_path / "faulty.sqlite"))
        faulty = score(planted_records, true_descriptions(FEATURES), client)
        assert server.injected.get("malformed", 0) + server.injected.get("truncated", 0) > 5
    assert client.usage.invalid_answers > 5  # rejected by the validator and asked again
    assert faulty.equals(clean)


def test_answers_are_read_from_the_usual_shapes():
    assert read_choice('{"intruder": 3}', 5) == 3
    assert read_choice('Sure!\n```json\n{"intruder": "2"}\n```', 5) == 2
    assert read_choice("The intruder is Example 4.", 5) == 4
    assert read_choice("Reasoning... [RESPONSE]: 1", 5) == 1  # delphi's format
    assert read_choice(" 5 ", 5) == 5
    for bad in ('{"intruder": 6}', '{"intruder": 0}', "no idea", "", None, "1 or 2"):
        assert read_choice(bad, 5) is None


def test_every_call_carries_the_intruder_schema_and_the_prompt_fits_it(planted_records, rater, make_client):
    client = make_client(structured_output="on")
    score(planted_records[:1], {0: "d"}, client)
    assert rater.requests == 10 and client.usage.answers == client.usage.parsed == {"intruder": 10}
    for format_ in rater.response_formats:
        assert format_["json_schema"]["name"] == "intruder"
        assert format_["json_schema"]["schema"]["properties"] == {
            "intruder": {"type": "integer", "enum": [1, 2, 3, 4, 5]}
        }
    prompt = system_prompt("intruder")
    assert INTRUDER_MARKER in prompt and "Description" not in prompt
    example_answer = json.loads(re.search(r"for example (\{.*?\})", prompt).group(1))
    jsonschema.validate(example_answer, intruder_answer(5).response_format["json_schema"]["schema"])


def test_settings_pools_and_identities():
    assert least_active_needed(ScorersConfig(enabled=["intruder"], intruder={"num_trials": 12})) == 36
    with pytest.raises(ConfigError, match="an intruder could be an activating example"):
        parse_config({"scorers": {"intruder": {"activating_above": 0.1, "non_activating_below": 0.2}}})
    # Runs that do not enable the intruder keep the identity they had before it existed; runs that do not.
    plain = parse_config({"scorers": {"enabled": ["detection"]}})
    tuned = parse_config({"scorers": {"enabled": ["detection"], "intruder": {"num_trials": 3}}})
    assert result_fingerprint(plain) == result_fingerprint(tuned)
    on = parse_config({"scorers": {"enabled": ["intruder"]}})
    on_tuned = parse_config({"scorers": {"enabled": ["intruder"], "intruder": {"num_trials": 3}}})
    assert result_fingerprint(on) != result_fingerprint(on_tuned)


def test_tracked_metrics_and_the_leaderboard_column(planted_records, mixtures, make_client, tmp_path):
    """Two variants' per-feature tables from run_scorers, summarised and logged as a tracked run does, then
    read back from the built leaderboard document: `intruder` is a column with the runs' means."""
    from harness.stages import score_metrics
    from harness.track.runs import log_metrics, variant_run
    from harness.track.store import ensure_experiment
    from leaderboard import LeaderboardDocument, build_site

    config = ScorersConfig(enabled=["detection", "intruder"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = ensure_experiment("intruder", uri)
    client = make_client()
    means = {}
    for name, records in (("coherent", planted_records), ("mixed", mixtures)):
        descriptions = {record.feature: f'the word "{TOPICS[record.feature % 4]}"' for record in records}
        table = run_scorers(records, descriptions, config, client, progress=False)
        table.insert(1, "description", table["feature"].map(descriptions))
        table["clarity"] = 0.5
        metrics = score_metrics(table, 100, 0, ("clarity", *config.enabled))
        assert {"intruder_mean", "intruder_ci_low", "intruder_ci_high", "intruder_defined"} <= set(metrics)
        means[name] = metrics["intruder_mean"]
        with variant_run(experiment, name, name):
            log_metrics(metrics)
            per_feature = table.astype(object).where(table.notna(), None)
            mlflow.log_text(json.dumps({"columns": list(per_feature.columns), "data": per_feature.values.tolist()}),
                            "tables/per_feature.json")  # fmt: skip
    assert means["coherent"] == 1.0 and means["mixed"] < 0.5
    index = build_site(["intruder"], uri, tmp_path / "site", progress=False)
    document = LeaderboardDocument.model_validate_json((index.parent / "leaderboard.json").read_text())
    assert "intruder" in document.scores and "detection" in document.scores
    entries = {entry.variant: entry for entry in document.variants}
    assert entries["coherent"].scores["intruder"].mean == means["coherent"]
    assert entries["mixed"].scores["intruder"].mean == pytest.approx(means["mixed"])
    assert entries["coherent"].ranks["intruder"].rank == 1
    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_the_embedding_rater_proxy_finds_the_odd_text_out(planted_records, mixtures):
    from harness.raters import build_rater

    records = [*planted_records, *mixtures]
    corpus = [example.text for record in records for example in (*record.top_examples, *record.pool)]
    fade = parse_config(
        {
            "fade": {
                "rater": {"model": "embedding/all-minilm-l6-v2"},
                "generator": {"model": "local/smollm2-135m"},
                "embedding_rater": {"device": "cpu"},
            }
        }  # fmt: skip
    ).fade
    rater = build_rater(fade, "unused", corpus, progress=False)
    config = ScorersConfig(enabled=["intruder"])
    coherent = run_scorers(planted_records, true_descriptions(FEATURES), config, rater, progress=False)
    again = run_scorers(planted_records, shuffled_descriptions(FEATURES), config, rater, progress=False)
    assert coherent.equals(again)
    assert coherent["intruder_reason"].isna().all() and (coherent["intruder_trials"] == 10).all()
    # Four sentences about one topic and one about another, in the same sentence frames: the topic word
    # moves the embedding enough to pick the intruder well above chance (0.2).
    assert coherent["intruder"].mean() >= 0.6 and (coherent["intruder"] > CHANCE).all(), coherent["intruder"].tolist()
    mixed = run_scorers(mixtures, dict.fromkeys([r.feature for r in mixtures], "x"), config, rater, progress=False)
    assert abs(mixed["intruder"].mean() - CHANCE) < CHANCE_TOLERANCE, mixed["intruder"].tolist()
