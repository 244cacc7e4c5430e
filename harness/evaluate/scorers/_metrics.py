"""The scorers' numbers as pure functions: labels, predictions and activations in, typed scores out.

A score is undefined (value None, with the reason) where the data cannot define it: one class only,
nothing answered, constant true activations. No IO, no LLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from harness.errors import EvaluationError
from harness.evaluate.scores import Score
from harness.score_names import Reason


@dataclass(frozen=True)
class BinaryScores:
    """How well yes/no judgements (and, when given, their probabilities) match the true labels."""

    balanced_accuracy: Score
    f1: Score
    auroc: Score
    num_judged: int


def _vector(values: Any, name: str, dtype: type) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def binary_scores(labels: Any, predictions: Any, probabilities: Any = None) -> BinaryScores:
    """Balanced accuracy, F1 (the activating/correct class is positive) and AUROC of a rater's judgements.

    Args:
        labels: the truth per judged example (True = shows the feature / highlighted correctly).
        predictions: the rater's yes/no per example, aligned with `labels`.
        probabilities: the rater's P(yes) per example (from log-probabilities), or None. AUROC needs one
            for every example; without them it is undefined (reason no_scores).
    """
    truth = _vector(labels, "labels", bool)
    guesses = _vector(predictions, "predictions", bool)
    if guesses.shape != truth.shape:
        raise EvaluationError(f"predictions have shape {guesses.shape}, labels {truth.shape}; give one per label")
    if truth.size == 0:
        undefined = Score.undefined(Reason.NO_VALID_ANSWERS)
        return BinaryScores(undefined, undefined, undefined, 0)
    if truth.all() or not truth.any():
        undefined = Score.undefined(Reason.SINGLE_CLASS_ANSWERED)
        return BinaryScores(undefined, undefined, undefined, int(truth.size))
    if probabilities is None:
        auroc = Score.undefined(Reason.NO_SCORES)
    else:
        scores = _vector(probabilities, "probabilities", float)
        if scores.shape != truth.shape or not np.isfinite(scores).all():
            raise EvaluationError("probabilities must be finite numbers, one per label")
        auroc = Score.of(roc_auc_score(truth, scores))
    return BinaryScores(
        balanced_accuracy=Score.of(balanced_accuracy_score(truth, guesses)),
        f1=Score.of(f1_score(truth, guesses, zero_division=0.0)),
        auroc=auroc,
        num_judged=int(truth.size),
    )


def similarity_auroc(labels: Any, similarities: Any) -> Score:
    """AUROC of similarity as a detector of activating examples (labels True = activating)."""
    truth = _vector(labels, "labels", bool)
    scores = _vector(similarities, "similarities", float)
    if scores.shape != truth.shape:
        raise EvaluationError(f"similarities have shape {scores.shape}, labels {truth.shape}; give one per label")
    if not truth.any():
        return Score.undefined(Reason.NO_ACTIVATING_EXAMPLES)
    if truth.all():
        return Score.undefined(Reason.NO_NON_ACTIVATING_EXAMPLES)
    return Score.of(roc_auc_score(truth, scores))


def simulation_correlation(true_activations: Any, predicted: Any) -> Score:
    """Pearson correlation of predicted with true per-token activations (Bills et al. 2023).

    Undefined when there is nothing to compare or the true activations are constant. Constant predictions
    against varying activations score 0: the description predicts none of the variation.
    """
    truth = _vector(true_activations, "true_activations", float)
    guess = _vector(predicted, "predicted", float)
    if guess.shape != truth.shape:
        raise EvaluationError(f"predictions have shape {guess.shape}, activations {truth.shape}; give one per token")
    if not (np.isfinite(truth).all() and np.isfinite(guess).all()):
        raise EvaluationError("activations and predictions must be finite numbers")
    if truth.size == 0:
        return Score.undefined(Reason.NO_VALID_ANSWERS)
    if np.ptp(truth) == 0:
        return Score.undefined(Reason.CONSTANT_ACTIVATIONS)
    if np.ptp(guess) == 0:
        return Score.of(0.0)
    return Score.of(float(np.clip(np.corrcoef(truth, guess)[0, 1], -1.0, 1.0)))
