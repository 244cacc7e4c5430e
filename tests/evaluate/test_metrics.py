"""FADE metrics and score types: hand-computed answers, undefined cases, bad input, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import EvaluationError
from harness.evaluate.fade._metrics import (
    clarity,
    faithfulness,
    faithfulness_gate,
    gini_ap,
    p2_from_ratings,
    responsiveness_purity,
)
from harness.evaluate.scores import FeatureScores, Score, summarise
from harness.score_names import Reason


def split(negative: list[float], positive: list[float]) -> tuple[list[float], list[int]]:
    return negative + positive, [0] * len(negative) + [1] * len(positive)


# AUROC counts positive-above-negative pairs (ties count half); AP averages precision at each recall step.
@pytest.mark.parametrize(
    ("negative", "positive", "signed_gini", "average_precision"),
    [
        ([0, 1], [2, 3], 1.0, 1.0),
        ([0, 2], [1, 3], 0.5, 0.5 * 1 + 0.5 * 2 / 3),  # pairs: 3 of 4 ordered; ranks P N P N
        ([1, 1], [1, 2], 0.5, 0.5 * 1 + 0.5 * 2 / 4),  # ties: 2 + 2·½ of 4; thresholds 2 and 1
        ([3, 1], [0, 2], -0.5, 0.5 * 1 + 0.5 * 2 / 3),  # negative Gini: AP of the negated activations
        ([2, 3], [0, 1], -1.0, 1.0),
        ([5, 5, 5], [5], 0.0, 0.25),  # constant: no separation, AP = share of positives
    ],
)
def test_gini_ap_known_answers(negative, positive, signed_gini, average_precision):
    result = gini_ap(*split(negative, positive))
    assert result.signed_gini == pytest.approx(signed_gini)
    assert result.gini.value == pytest.approx(abs(signed_gini))
    assert result.average_precision.value == pytest.approx(average_precision)
    assert (result.num_negative, result.num_positive) == (len(negative), len(positive))


def test_gini_ap_accepts_boolean_labels_and_integer_activations():
    result = gini_ap(np.array([0, 2, 1, 3]), np.array([False, False, True, True]))
    assert result.gini.value == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("activations", "labels", "reason"),
    [
        ([1.0, 2.0], [0, 0], Reason.NO_POSITIVE_SAMPLES),
        ([1.0, 2.0], [1, 1], Reason.NO_NEGATIVE_SAMPLES),
        ([], [], Reason.NO_POSITIVE_SAMPLES),
    ],
)
def test_gini_ap_undefined_when_a_class_is_missing(activations, labels, reason):
    result = gini_ap(activations, labels)
    assert result.gini == result.average_precision == Score.undefined(reason)
    assert result.signed_gini is None


@pytest.mark.parametrize(
    ("activations", "labels", "message"),
    [
        ([1.0, float("nan")], [0, 1], "non-finite"),
        ([[1.0, 2.0]], [[0, 1]], "1-D"),
        (["a", "b"], [0, 1], "numbers"),
        ([1.0, 2.0], [0, 1, 1], "one label per activation"),
        ([1.0, 2.0], [0, 2], "0 or 1"),
    ],
)
def test_gini_ap_rejects_bad_input(activations, labels, message):
    with pytest.raises(EvaluationError, match=message):
        gini_ap(activations, labels)


def test_clarity_known_answer_and_missing_sides():
    assert clarity([1.0, 3.0], [0.0, 2.0]).value == pytest.approx(0.5)
    assert clarity([-3.0, -2.0], [0.0, 1.0]).value == pytest.approx(1.0)  # fires negatively: still clear
    assert clarity([], [0.0, 1.0]) == Score.undefined(Reason.NO_SYNTHETIC_SAMPLES)
    assert clarity([1.0], []) == Score.undefined(Reason.NO_NATURAL_SAMPLES)


def test_responsiveness_purity_drops_rating_1():
    # Without the drop, the rated-1 sample at 5.0 would outrank everything and change both scores.
    activations = [0.1, 5.0, 3.0, 0.2, 0.3]
    ratings = [0, 1, 2, 2, 0]
    result = responsiveness_purity(activations, ratings)
    assert result.gini.value == pytest.approx(0.5)  # positives {3, 0.2} vs negatives {0.1, 0.3}: 3 of 4 pairs
    assert result.average_precision.value == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert (result.num_positive, result.num_negative) == (2, 2)


@pytest.mark.parametrize(
    ("ratings", "reason"),
    [
        ([0, 1, 0], Reason.NO_RATED_2_SAMPLES),
        ([2, 1, 2], Reason.NO_RATED_0_SAMPLES),
        ([1, 1, 1], Reason.NO_RATED_2_SAMPLES),
        ([], Reason.NO_RATED_2_SAMPLES),
    ],
)
def test_responsiveness_purity_undefined(ratings, reason):
    result = responsiveness_purity([0.5] * len(ratings), ratings)
    assert result.gini == result.average_precision == Score.undefined(reason)


def test_responsiveness_purity_rejects_ratings_off_the_scale():
    with pytest.raises(EvaluationError, match="ratings 0, 1 or 2"):
        responsiveness_purity([0.1, 0.2], [0, 3])
    with pytest.raises(EvaluationError, match="one rating per activation"):
        responsiveness_purity([0.1, 0.2], [0])


def test_p2_from_ratings_shares_and_factors_without_ratings():
    shares = p2_from_ratings({0: [0, 2, 2, 1], 10: (2, 2), -1: [], 50: np.array([0, 0, 1])})
    assert shares == {0.0: 0.5, 10.0: 1.0, 50.0: 0.0}
    with pytest.raises(EvaluationError, match="factor 1"):
        p2_from_ratings({1: [2, 5]})


def test_faithfulness_known_answer_reports_the_factor_attaining_it():
    result = faithfulness({-10: 0.0, 0: 0.2, 10: 0.6, 50: 0.4})
    assert result.score.value == pytest.approx((0.6 - 0.2) / (1 - 0.2))
    assert result.factor == 10.0  # the reference would say 50, the largest factor tried


def test_faithfulness_ties_go_to_the_weakest_steering():
    assert faithfulness({-10: 0.5, 0: 0.1, 10: 0.5, 50: 0.5}).factor == 10.0
    assert faithfulness({-1: 0.5, 0: 0.1, 10: 0.5}).factor == -1.0


def test_faithfulness_zero_when_no_factor_beats_the_baseline():
    result = faithfulness({-1: 0.1, 0: 0.3, 1: 0.3})
    assert result.score == Score.of(0.0) and result.factor is None


@pytest.mark.parametrize(
    ("p2", "reason"),
    [
        ({-1: 0.5, 0: 1.0, 1: 1.0}, Reason.BASELINE_ALL_RATED_2),
        ({1: 0.5, 10: 0.9}, Reason.NO_BASELINE_RATINGS),
        ({}, Reason.NO_BASELINE_RATINGS),
    ],
)
def test_faithfulness_undefined(p2, reason):
    result = faithfulness(p2)
    assert result.score == Score.undefined(reason) and result.factor is None


def test_faithfulness_rejects_shares_outside_unit_interval():
    with pytest.raises(EvaluationError, match=r"\[0, 1\]"):
        faithfulness({0: 0.2, 1: 1.5})


def test_faithfulness_gate_follows_the_reference_rule():
    assert faithfulness_gate(Score.of(0.5), Score.of(0.5), 0.5) is None  # >= threshold computes
    assert faithfulness_gate(Score.of(0.49), Score.of(0.9), 0.5) == Reason.BELOW_GINI_THRESHOLD
    assert faithfulness_gate(Score.of(0.9), Score.of(0.1), 0.5) == Reason.BELOW_GINI_THRESHOLD
    undefined = Score.undefined(Reason.NO_RATED_2_SAMPLES)
    assert faithfulness_gate(Score.of(0.9), undefined, 0.5) == Reason.GATE_SCORE_UNDEFINED


def test_score_holds_a_value_or_a_reason():
    assert Score.of(0.25).defined and not Score.undefined(Reason.NO_SYNTHETIC_SAMPLES).defined
    for bad in ({}, {"value": 0.5, "reason": "x"}, {"value": float("nan")}, {"value": 0.1, "extra": 1}):
        with pytest.raises(EvaluationError, match="invalid stored Score"):
            Score.from_dict(bad)


def test_feature_scores_json_round_trip():
    scores = FeatureScores(
        clarity=Score.of(0.8),
        responsiveness=Score.of(0.6),
        purity=Score.of(0.7),
        faithfulness=Score.of(0.25),
        faithfulness_factor=-10.0,
        counts={"synthetic": 120, "natural": 1000, "rated_0": 400, "rated_1": 60, "rated_2": 40},
    )
    stored = json.dumps(scores.to_dict())
    assert json.loads(stored)["faithfulness"] == {"value": 0.25, "reason": None}
    assert FeatureScores.from_dict(json.loads(stored)) == scores
    not_computed = scores.model_copy(
        update={"faithfulness": Score.undefined(Reason.BELOW_GINI_THRESHOLD), "faithfulness_factor": None}
    )
    assert json.loads(json.dumps(not_computed.to_dict()))["faithfulness"]["reason"] == "below_gini_threshold"


def test_feature_scores_from_dict_names_the_wrong_field():
    data = FeatureScores(
        clarity=Score.of(0.8), responsiveness=Score.of(0.6), purity=Score.of(0.7), faithfulness=Score.of(0.0)
    ).to_dict()
    with pytest.raises(EvaluationError, match="faithfulness_factor"):
        FeatureScores.from_dict(data | {"faithfulness_factor": 10.0})  # a factor needs faithfulness > 0
    with pytest.raises(EvaluationError, match="counts.natural"):
        FeatureScores.from_dict(data | {"counts": {"natural": -1}})
    with pytest.raises(EvaluationError, match="purity"):
        FeatureScores.from_dict({key: value for key, value in data.items() if key != "purity"})


def test_summarise_ignores_undefined_and_reports_the_share_defined():
    values = [0.2, None, 0.4, Score.undefined(Reason.NO_RATED_2_SAMPLES), Score.of(0.6)]
    summary = summarise(values)
    assert (summary["n"], summary["n_defined"], summary["share_defined"]) == (5, 3, 0.6)
    assert summary["mean"] == pytest.approx(0.4) and summary["median"] == pytest.approx(0.4)
    assert 0.2 <= summary["ci_low"] <= 0.4 <= summary["ci_high"] <= 0.6
    assert 0.2 <= summary["median_ci_low"] <= summary["median_ci_high"] <= 0.6


def test_summarise_constant_scores_have_a_zero_width_interval():
    summary = summarise([0.7] * 10)
    assert summary["ci_low"] == summary["ci_high"] == summary["mean"] == pytest.approx(0.7)


def test_summarise_interval_matches_the_normal_approximation():
    values = np.random.default_rng(0).normal(loc=0.5, scale=0.1, size=400)
    summary = summarise(values.tolist(), num_resamples=2000)
    half_width = 1.96 * values.std() / np.sqrt(values.size)
    assert summary["ci_high"] - summary["ci_low"] == pytest.approx(2 * half_width, rel=0.15)
    assert summary == summarise(values.tolist(), num_resamples=2000)  # seeded: reproducible
    assert summary["ci_low"] != summarise(values.tolist(), num_resamples=2000, seed=1)["ci_low"]


def test_summarise_in_small_chunks_gives_a_similar_interval(monkeypatch):
    values = np.random.default_rng(1).uniform(size=300).tolist()
    whole = summarise(values)
    monkeypatch.setattr("harness.evaluate.scores._BOOTSTRAP_CHUNK_VALUES", 1000)  # 3 resamples per chunk
    chunked = summarise(values)
    assert chunked["ci_low"] == pytest.approx(whole["ci_low"], abs=0.01)
    assert chunked["ci_high"] == pytest.approx(whole["ci_high"], abs=0.01)


def test_summarise_without_defined_values():
    assert summarise([None, Score.undefined(Reason.BASELINE_ALL_RATED_2)]) == {
        "n": 2,
        "n_defined": 0,
        "share_defined": 0.0,
        **dict.fromkeys(("mean", "ci_low", "ci_high", "median", "median_ci_low", "median_ci_high")),
    }
    assert summarise([])["share_defined"] is None
    with pytest.raises(EvaluationError, match="finite"):
        summarise([0.1, float("nan")])
