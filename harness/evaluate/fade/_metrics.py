"""FADE's metrics as pure functions: arrays in, typed scores out (no IO, no LLM).

The numbers are the reference's (`fade.results.gini_ap_metric`, `fade.results.faithfulness_metric`,
fade-language 0.1.2): same sklearn calls on the same arrays, in the same order. Where the reference
crashes or divides by zero, the score is undefined with a `Reason` instead (docs/fade-deviations.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.errors import EvaluationError
from harness.evaluate.scores import Score
from harness.score_names import Reason

RATING_ABSENT, RATING_VAGUE, RATING_PRESENT = 0, 1, 2
VALID_RATINGS = (RATING_ABSENT, RATING_VAGUE, RATING_PRESENT)
BASELINE_FACTOR = 0.0


@dataclass(frozen=True)
class GiniAP:
    """Separation of positive from negative samples by activation.

    `gini` = |2·AUROC − 1|; `average_precision` is computed on the activations negated when the signed
    Gini is negative (the feature then marks the concept by low values). `signed_gini` keeps the sign.
    """

    gini: Score
    average_precision: Score
    signed_gini: float | None
    num_positive: int
    num_negative: int


@dataclass(frozen=True)
class FaithfulnessResult:
    """Faithfulness and the steering factor attaining it (None when undefined or 0)."""

    score: Score
    factor: float | None


def activation_vector(values: Any, *, name: str) -> np.ndarray:
    """`values` as a 1-D array of finite numbers; EvaluationError saying what is wrong otherwise.

    Floats keep their dtype (float32 activations stay float32, as in the reference's tensors).
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be a 1-D array of activations, got shape {array.shape}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise EvaluationError(f"{name} must hold numbers, got dtype {array.dtype}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array))
        raise EvaluationError(
            f"{name} has {bad.size} non-finite values (first at position {bad[0]}); activations must be "
            "finite. NaN/inf usually mean an overflow in the subject model: run it in float32."
        )
    return array


def _gini_ap(
    negative: np.ndarray, positive: np.ndarray, *, no_negative_reason: Reason, no_positive_reason: Reason
) -> GiniAP:
    if positive.size == 0 or negative.size == 0:
        # Deviation from the FADE reference: it crashes on missing ratings (unassigned variables) and gets
        # NaN (or a ValueError, sklearn < 1.6) for one class; the scores are undefined with the reason instead.
        reason = Score.undefined(no_positive_reason if positive.size == 0 else no_negative_reason)
        return GiniAP(reason, reason, None, int(positive.size), int(negative.size))
    # Same concatenation order and calls as fade.results.gini_ap_metric, so the floats are identical.
    activations = np.concatenate([negative, positive])
    labels = np.concatenate([np.zeros(negative.size), np.ones(positive.size)])
    signed_gini = 2 * roc_auc_score(labels, activations) - 1
    if signed_gini < 0:
        activations = -activations
    average_precision = average_precision_score(labels, activations)
    return GiniAP(
        gini=Score.of(abs(signed_gini)),
        average_precision=Score.of(average_precision),
        signed_gini=float(signed_gini),
        num_positive=int(positive.size),
        num_negative=int(negative.size),
    )


def gini_ap(activations: Any, labels: Any) -> GiniAP:
    """Gini and average precision of `activations` as a score for binary `labels` (1 = positive).

    Undefined (reason no_positive_samples / no_negative_samples) when a class is missing.
    """
    activations = activation_vector(activations, name="activations")
    labels = np.asarray(labels)
    if labels.shape != activations.shape:
        raise EvaluationError(
            f"labels have shape {labels.shape}, activations {activations.shape}; give one label per activation"
        )
    if not np.isin(labels, (0, 1)).all():
        raise EvaluationError(f"labels must be 0 or 1 (or booleans), got values {np.unique(labels)[:10].tolist()}")
    positive_mask = labels.astype(bool)
    return _gini_ap(
        activations[~positive_mask],
        activations[positive_mask],
        no_negative_reason=Reason.NO_NEGATIVE_SAMPLES,
        no_positive_reason=Reason.NO_POSITIVE_SAMPLES,
    )


def clarity(synthetic_activations: Any, natural_activations: Any) -> Score:
    """Clarity: Gini of activation separating synthetic (concept) from natural samples."""
    result = _gini_ap(
        activation_vector(natural_activations, name="natural_activations"),
        activation_vector(synthetic_activations, name="synthetic_activations"),
        no_negative_reason=Reason.NO_NATURAL_SAMPLES,
        no_positive_reason=Reason.NO_SYNTHETIC_SAMPLES,
    )
    return result.gini


def _rating_vector(ratings: Any, *, name: str) -> np.ndarray:
    array = np.asarray(ratings)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be a 1-D sequence of ratings, got shape {array.shape}")
    if array.size and (not np.issubdtype(array.dtype, np.number) or not np.isin(array, VALID_RATINGS).all()):
        # Deviation from the FADE reference: its parser also accepts 3 and silently ignores it in the
        # metrics; the rating scale is 0-2, so anything else is a parsing bug upstream.
        raise EvaluationError(
            f"{name} must be ratings 0, 1 or 2, got values {np.unique(array)[:10].tolist()}; "
            "drop missing or invalid ratings before scoring"
        )
    return array


def responsiveness_purity(activations: Any, ratings: Any) -> GiniAP:
    """Responsiveness (`gini`) and Purity (`average_precision`) of one feature.

    Samples rated 1 are dropped; rated 2 are positive, rated 0 negative.

    Args:
        activations: per-sample activations of the rated samples.
        ratings: the rating (0, 1 or 2) of each of those samples, aligned with `activations`.
    """
    activations = activation_vector(activations, name="activations")
    ratings = _rating_vector(ratings, name="ratings")
    if ratings.shape != activations.shape:
        raise EvaluationError(
            f"ratings have shape {ratings.shape}, activations {activations.shape}; give one rating per activation"
        )
    return _gini_ap(
        activations[ratings == RATING_ABSENT],
        activations[ratings == RATING_PRESENT],
        no_negative_reason=Reason.NO_RATED_0_SAMPLES,
        no_positive_reason=Reason.NO_RATED_2_SAMPLES,
    )


def p2_from_ratings(ratings_by_factor: Mapping[float, Iterable[int]]) -> dict[float, float]:
    """p2(f): the share of continuations rated 2 under each steering factor f.

    Factors without any rating are left out (the reference's all-NaN column, which its max skips).

    Args:
        ratings_by_factor: factor -> the ratings (0, 1 or 2) of its rated continuations.
    """
    shares: dict[float, float] = {}
    for factor, ratings in ratings_by_factor.items():
        ratings = _rating_vector(list(ratings), name=f"ratings of factor {factor}")
        if ratings.size:
            shares[float(factor)] = float(np.count_nonzero(ratings == RATING_PRESENT) / ratings.size)
    return shares


def faithfulness(p2_by_factor: Mapping[float, float]) -> FaithfulnessResult:
    """Faithfulness = max(max_f p2(f) − p2(0), 0) / (1 − p2(0)), and the factor attaining the max.

    Args:
        p2_by_factor: factor -> share rated 2 (see `p2_from_ratings`); must contain the baseline 0.
    """
    shares = {float(factor): float(share) for factor, share in p2_by_factor.items()}
    bad = {factor: share for factor, share in shares.items() if not 0 <= share <= 1}
    if bad:
        raise EvaluationError(f"p2 values must be shares in [0, 1], got {bad}")
    if BASELINE_FACTOR not in shares:
        # Deviation from the FADE reference: KeyError or NaN there; undefined with the reason here.
        return FaithfulnessResult(Score.undefined(Reason.NO_BASELINE_RATINGS), None)
    baseline = shares[BASELINE_FACTOR]
    if baseline == 1:
        # Deviation from the FADE reference: it computes 0/0 (NaN); nothing can improve on the baseline.
        return FaithfulnessResult(Score.undefined(Reason.BASELINE_ALL_RATED_2), None)
    best = max(shares.values())
    value = max(best - baseline, 0.0) / (1.0 - baseline)
    if value == 0:
        return FaithfulnessResult(Score.of(0.0), None)
    # Deviation from the FADE reference: it reports the largest factor tried; ours is the factor that
    # attains the max (ties: the smallest |factor|, then the positive one).
    factor = min((f for f, share in shares.items() if share == best), key=lambda f: (abs(f), -f))
    return FaithfulnessResult(Score.of(value), factor)


def faithfulness_gate(clarity_score: Score, responsiveness_score: Score, gini_threshold: float) -> str | None:
    """None when faithfulness is to be computed; otherwise the reason it is not (reference rule).

    Faithfulness is computed only when Clarity and Responsiveness are both defined and >= the threshold.
    """
    if clarity_score.value is None or responsiveness_score.value is None:
        return Reason.GATE_SCORE_UNDEFINED.value
    if clarity_score.value < gini_threshold or responsiveness_score.value < gini_threshold:
        return Reason.BELOW_GINI_THRESHOLD.value
    return None
