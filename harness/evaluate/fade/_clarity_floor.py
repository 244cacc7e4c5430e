"""The Clarity floor: how high a feature's Clarity is for descriptions that have nothing to do with it.

Clarity compares the feature on samples the generator wrote for the description with natural samples. A
feature that reacts to the generator's style scores high for any description; Clarity of a few unrelated
concepts (fade.clarity_floor.concepts) on the same feature and corpus shows that level. Their synthetic
samples do not depend on the feature: they are written once per evaluation (and cached for every variant),
and read on every feature in one forward pass. Method: docs/clarity-floor.md.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from harness.evaluate.fade._metrics import clarity
from harness.evaluate.scores import Score, _Record

# The floor's spread is taken as at least this: when every unrelated concept gives the same Clarity, a
# tiny difference is not infinitely many spreads away.
MIN_SPREAD = 0.01


class ClarityFloor(_Record):
    """One feature's floor: each unrelated concept's Clarity, their mean and spread, and where the feature's
    own Clarity stands (`above` = Clarity - mean, `z` = above / max(spread, MIN_SPREAD), `beats` = z >= the
    configured threshold); `above`, `z` and `beats` are None when Clarity or the floor is undefined."""

    by_concept: dict[str, Score]
    mean: float | None
    spread: float | None
    above: float | None
    z: float | None
    beats: bool | None


def clarity_floor(
    clarity_score: Score,
    natural_activations: np.ndarray,
    unrelated_activations: Mapping[str, np.ndarray],
    beats_at_z: float,
) -> ClarityFloor:
    """The floor of one feature from its activations on each unrelated concept's synthetic samples.

    Args:
        clarity_score: the feature's Clarity for its own description.
        natural_activations: the feature's per-sample activation on the natural samples (as for Clarity).
        unrelated_activations: concept -> the feature's per-sample activation on that concept's samples.
        beats_at_z: how many spreads above the floor's mean Clarity must be to beat it.
    """
    by_concept = {concept: clarity(values, natural_activations) for concept, values in unrelated_activations.items()}
    values = np.array([score.value for score in by_concept.values() if score.value is not None])
    if values.size < 2:
        return ClarityFloor(by_concept=by_concept, mean=None, spread=None, above=None, z=None, beats=None)
    mean, spread = float(values.mean()), float(values.std(ddof=1))
    if clarity_score.value is None:
        return ClarityFloor(by_concept=by_concept, mean=mean, spread=spread, above=None, z=None, beats=None)
    above = clarity_score.value - mean
    z = above / max(spread, MIN_SPREAD)
    return ClarityFloor(by_concept=by_concept, mean=mean, spread=spread, above=above, z=z, beats=bool(z >= beats_at_z))
