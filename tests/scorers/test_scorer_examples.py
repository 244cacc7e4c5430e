"""Which examples the scorers show: counts, labels, thresholds, seeding; the fuzzing highlights."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scorer_records import TOPICS, example, planted_record

from harness.config import FuzzingConfig, ScorerExamplesConfig, parse_config
from harness.errors import ConfigError
from harness.evaluate.scorers import scoring_examples
from harness.evaluate.scorers._fuzzing import FuzzingScorer, correct_highlight, wrong_highlight
from harness.explain import FeatureRecord


def test_activating_then_non_activating_with_the_planted_word_only_in_the_first():
    record = planted_record(1)
    labelled = scoring_examples(record, ScorerExamplesConfig(num_examples=10, non_activating_share=0.4))
    assert [item.activating for item in labelled] == [True] * 6 + [False] * 4
    for item in labelled:
        has_topic = any(token.strip() == TOPICS[1] for token in item.example.tokens)
        assert has_topic == item.activating
        if not item.activating:
            assert float(item.example.activations.max()) == 0.0
    assert not any("meeting" in item.example.text for item in labelled)  # the weak ones sit between thresholds


def test_seeded_draws_repeat_and_change_with_the_seed():
    record = planted_record(2)
    settings = ScorerExamplesConfig(num_examples=8, strategy="random")
    ids = [item.example.sample_id for item in scoring_examples(record, settings)]
    assert ids == [item.example.sample_id for item in scoring_examples(record, settings)]
    other = [item.example.sample_id for item in scoring_examples(record, settings.model_copy(update={"seed": 5}))]
    assert other != ids


def test_thresholds_decide_the_labels():
    record = planted_record(0, num_activating=3, num_quiet=2, num_weak=2)  # weak examples peak at 1/10 of the max
    loose = ScorerExamplesConfig(num_examples=10, activating_above=0.05, non_activating_below=0.05)
    labelled = scoring_examples(record, loose)
    assert sum(item.activating for item in labelled) == 5  # 3 planted + 2 weak
    strict = ScorerExamplesConfig(num_examples=10, activating_above=0.5, non_activating_below=0.2)
    labelled = scoring_examples(record, strict)
    assert sum(item.activating for item in labelled) == 3
    assert sum(not item.activating for item in labelled) == 4  # 2 quiet + 2 weak


def test_no_examples_or_all_zero_activations_give_none():
    settings = ScorerExamplesConfig()
    assert scoring_examples(FeatureRecord(feature=3, top_examples=()), settings) == []
    zeros = tuple(example(i, f"Nothing fires in sentence {i}.", None, 0.0) for i in range(5))
    assert scoring_examples(FeatureRecord(feature=3, top_examples=zeros), settings) == []


def test_example_settings_are_validated():
    with pytest.raises(ConfigError, match="no activating or no non-activating"):
        parse_config({"scorers": {"detection": {"num_examples": 2, "non_activating_share": 0.9}}})
    with pytest.raises(ConfigError, match="must not exceed activating_above"):
        parse_config({"scorers": {"embedding": {"activating_above": 0.1, "non_activating_below": 0.3}}})
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config({"scorers": {"enabled": ["detection", "detection"]}})
    with pytest.raises(ConfigError, match="scorers.fuzzing.wrong_examples"):
        parse_config({"scorers": {"fuzzing": {"wrong_examples": "all"}}})


def test_correct_highlight_marks_active_tokens_and_at_least_the_peak():
    weak = example(1, "The dog sat.", "dog", 2.0)
    assert correct_highlight(weak, scale=10.0, threshold=0.3).tolist() == [False, True, False, False]
    strong = example(2, "The dog sat.", "dog", 9.0)
    assert correct_highlight(strong, scale=10.0, threshold=0.3).tolist() == [False, True, False, False]


def test_wrong_highlight_avoids_the_given_tokens():
    rng = np.random.default_rng(0)
    avoid = np.array([False, True, True, False, False])
    for _ in range(20):
        marked = wrong_highlight(5, avoid, 2, rng)
        assert marked.sum() == 2 and not (marked & avoid).any()
    assert wrong_highlight(2, np.array([True, True]), 1, rng) is None


@pytest.mark.parametrize("wrong_examples", ["non-activating", "activating"])
def test_fuzzing_items_wrong_highlights_never_touch_the_planted_word(wrong_examples):
    record = planted_record(3)
    settings = FuzzingConfig(num_examples=12, wrong_examples=wrong_examples)
    labelled = scoring_examples(record, settings)
    items = FuzzingScorer().items(record, labelled, settings)
    right = [item for item in items if item.label]
    wrong = [item for item in items if not item.label]
    assert len(right) == 6 and len(wrong) == 6
    assert all(f"<<{TOPICS[3]}>>" in item.text for item in right)
    assert not any(f"<<{TOPICS[3]}>>" in item.text for item in wrong)
    per_example = math.ceil(np.mean([item.text.count("<<") for item in right]))
    assert all(item.text.count("<<") >= 1 and item.text.count("<<") <= per_example for item in wrong)
    if wrong_examples == "activating":
        assert all(TOPICS[3] in item.text for item in wrong)  # same texts, marks elsewhere
