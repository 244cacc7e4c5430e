"""The embedding rater with the real all-MiniLM-L6-v2: ratings in the right order, thresholds per description,
its place behind `fade.rater`, and the scorers that can and cannot use it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scorers"))

from scorer_records import TOPICS, planted_record, shuffled_descriptions, true_descriptions  # noqa: E402

from harness.config import ScorersConfig, parse_config  # noqa: E402
from harness.errors import ConfigError  # noqa: E402
from harness.evaluate.scorers import SCORERS, run_scorers  # noqa: E402
from harness.llm import LLMClient  # noqa: E402
from harness.raters import RATERS, Capability, EmbeddingRater, build_rater  # noqa: E402

pytestmark = pytest.mark.slow

# Background corpus: everyday sentences on many subjects, none about the test concepts.
BACKGROUND = [
    f"{subject} {verb} {time}."
    for subject in ("The committee", "My neighbour", "A small shop", "The weather service", "Our team")
    for verb in ("met again", "changed its plans", "opened late", "reported a delay", "moved offices")
    for time in ("on Monday", "last week", "in the spring", "after lunch")
]
COOKING = [
    "Whisk the eggs with sugar, then fold in the flour and bake the cake for forty minutes.",
    "Simmer the tomato sauce with garlic and basil before pouring it over the pasta.",
    "Knead the bread dough, let it rise, and bake it in a hot oven until golden.",
    "Season the roast chicken with rosemary and cook it slowly in the oven.",
]
UNRELATED = [
    "The satellite entered orbit after a three-stage rocket launch.",
    "Parliament passed the budget bill after a long debate.",
    "The striker scored twice in the second half of the match.",
    "Glaciers retreat as average temperatures rise each decade.",
]


def embedding_fade(**settings):
    fade = {"rater": {"model": "embedding/all-minilm-l6-v2"}, "generator": {"model": "local/smollm2-135m"}}
    return parse_config({"fade": {**fade, "embedding_rater": {"device": "cpu", **settings}}}).fade


@pytest.fixture(scope="module")
def rater() -> EmbeddingRater:
    built = build_rater(embedding_fade(), "unused", BACKGROUND + UNRELATED, progress=False)
    assert isinstance(built, EmbeddingRater)
    return built


def test_texts_showing_the_concept_are_rated_above_texts_that_do_not(rater):
    ratings = rater.rate("cooking recipes and baking", COOKING + UNRELATED)
    present, absent = ratings[: len(COOKING)], ratings[len(COOKING) :]
    assert present == [2] * len(COOKING)
    assert max(absent) < 2 and min(present) > max(absent)
    similarity = rater.similarities("cooking recipes and baking", COOKING + UNRELATED)
    assert similarity[: len(COOKING)].min() > similarity[len(COOKING) :].max()


def test_thresholds_are_the_background_quantiles_of_each_description(rater):
    description = "cooking recipes and baking"
    background = rater.similarities(description, BACKGROUND + UNRELATED)
    limits = rater.thresholds(description)
    assert limits.rated_1 == pytest.approx(np.quantile(background, 0.7), abs=1e-6)
    assert limits.rated_2 == pytest.approx(np.quantile(background, 0.9), abs=1e-6)
    # About 10% of the background itself is rated 2 and 30% at least 1, whatever the description.
    for other in ("cooking recipes and baking", "space exploration"):
        ratings = np.array(rater.rate(other, BACKGROUND + UNRELATED))
        assert 0.05 <= np.mean(ratings == 2) <= 0.15
        assert 0.25 <= np.mean(ratings >= 1) <= 0.35


def test_judgments_say_yes_from_the_background_median(rater):
    answers, scores = rater.judge("cooking recipes and baking", COOKING + UNRELATED)
    median = np.median(rater.similarities("cooking recipes and baking", BACKGROUND + UNRELATED))
    assert rater.thresholds("cooking recipes and baking").yes == pytest.approx(median, abs=1e-6)
    assert answers == [score >= median for score in scores] and all(answers[: len(COOKING)])
    assert len(scores) == len(answers) and min(scores[:4]) > max(scores[4:])


def test_the_rater_is_registered_by_provider_and_llm_strings_stay_llm_raters(rater, tmp_path):
    assert "embedding" in RATERS
    llm = build_rater(parse_config({}).fade, tmp_path, BACKGROUND, progress=False)
    assert llm.supports(Capability.PROMPTS) and isinstance(llm.chat, LLMClient)
    llm.close()
    assert [rater.supports(capability) for capability in Capability] == [False, True, True, True]
    assert rater.label == "embedding/all-minilm-l6-v2 (embedding proxy for an LLM judge)"
    assert build_rater(embedding_fade(), "unused", BACKGROUND + UNRELATED, progress=False) is rater


def test_a_corpus_too_small_for_a_background_is_a_clear_error():
    with pytest.raises(ConfigError, match="it needs at least 20"):
        build_rater(embedding_fade(), "unused", BACKGROUND[:5], progress=False)


def test_an_embedding_rater_cannot_write_synthetic_samples():
    with pytest.raises(ConfigError, match="set fade.generator to an LLM"):
        parse_config({"fade": {"rater": {"model": "embedding/all-minilm-l6-v2"}}})


def test_detection_tells_true_descriptions_from_shuffled_and_fuzzing_and_simulation_say_they_cannot():
    records = [planted_record(feature) for feature in range(len(TOPICS))]
    # The corpus the examples come from is the background, as in a run.
    corpus = [example.text for record in records for example in (*record.top_examples, *record.pool)]
    rater = build_rater(embedding_fade(), "unused", corpus, progress=False)
    features = [record.feature for record in records]
    config = ScorersConfig(enabled=["detection", "fuzzing", "simulation"])
    true = run_scorers(records, true_descriptions(features), config, rater, progress=False)
    shuffled = run_scorers(records, shuffled_descriptions(features), config, rater, progress=False)
    assert true["detection_reason"].isna().all() and (true["detection_unanswered"] == 0).all()
    assert (true["detection"] > shuffled["detection"]).all()
    assert (true["detection_auroc"] > 0.9).all() and (shuffled["detection_auroc"] < 0.5).all()
    for name, reason in (
        ("fuzzing", "rater_sees_no_highlights"),
        ("simulation", "rater_predicts_no_token_activations"),
    ):
        assert true[name].isna().all() and (true[f"{name}_reason"] == reason).all()
        assert SCORERS.get(name)().needs_llm


def test_the_delphi_convention_and_saebench_say_the_embedding_rater_reads_no_prompt():
    records = [planted_record(feature) for feature in range(2)]
    corpus = [example.text for record in records for example in (*record.top_examples, *record.pool)]
    rater = build_rater(embedding_fade(), "unused", corpus, progress=False)
    config = ScorersConfig(enabled=["detection", "fuzzing", "saebench"], convention="delphi")
    table = run_scorers(records, true_descriptions([0, 1]), config, rater, progress=False)
    for name in ("detection", "fuzzing", "saebench"):
        assert table[name].isna().all() and (table[f"{name}_reason"] == "rater_reads_no_prompt").all(), name
