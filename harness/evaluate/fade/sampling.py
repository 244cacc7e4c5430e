"""Which natural samples FADE sends to the rater: percentile bins plus the top, as the reference does.

Deviation from the FADE reference: randomness comes only from the `rng` passed in, never from numpy's
global state (concurrent features must not share hidden state). Passing
`np.random.RandomState(seed)` reproduces the reference's draws after `np.random.seed(seed)` (it calls
`np.random.choice` on the global RandomState): same bins, same calls, same order, same stream.
A `np.random.Generator` works too, with its own stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import EvaluationError
from harness.evaluate.fade._metrics import activation_vector

DEFAULT_PERCENTILES = (0.0, 50.0, 75.0, 95.0, 100.0)
Rng = np.random.Generator | np.random.RandomState


@dataclass(frozen=True)
class ActivationSubset:
    """The samples chosen for rating, as indices into the activations given.

    `indices` is sorted by sample index, so rating batches mix activation levels as the reference's
    (set-ordered) batches do, instead of grouping all top samples in one prompt.
    `bin_draws` holds the random draw of each percentile bin (in draw order) and `top_fill` the
    highest-activating samples added after them (descending); both are empty when every candidate
    was taken because there were no more than `num_samples`.
    """

    indices: np.ndarray
    bin_draws: tuple[np.ndarray, ...]
    top_fill: np.ndarray
    quota_per_bin: int


def activation_based_subset(
    activations: Any,
    num_samples: int,
    *,
    rng: Rng,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    top_share: float = 0.1,
    exclude: Iterable[int] = (),
) -> ActivationSubset:
    """Choose `num_samples` samples by activation: random draws per percentile bin, then the top.

    Candidates are sorted by signed activation and cut at `percentiles`; from each bin,
    int(num_samples·(1−top_share) // bins) are drawn at random without replacement (a bin no larger
    than that is taken whole); the rest up to `num_samples` are the highest candidates not yet drawn.
    With no more than `num_samples` candidates, all are taken.

    Args:
        activations: per-sample activation of the feature on the whole corpus.
        num_samples: how many samples to choose.
        rng: source of randomness; `np.random.RandomState(seed)` reproduces the reference's draws.
        percentiles: bin edges in percent of the candidates (the reference's are the default).
        top_share: `rating_top_sampling_percentage`: the share of `num_samples` kept for the top.
        exclude: samples that must not be chosen, e.g. the ones already rated, for the sparse retry
            ("draw another num_samples unrated samples the same way").
    """
    activations = activation_vector(activations, name="activations")
    if num_samples < 1:
        raise EvaluationError(f"num_samples must be at least 1, got {num_samples}")
    if not 0 <= top_share <= 1:
        raise EvaluationError(f"top_share must lie in [0, 1], got {top_share}")
    increasing = all(low < high for low, high in zip(percentiles, percentiles[1:]))
    if len(percentiles) < 2 or not increasing or percentiles[0] < 0 or percentiles[-1] > 100:
        raise EvaluationError(
            f"percentiles must be at least two increasing values within [0, 100], got {list(percentiles)}"
        )
    # Deviation from the FADE reference: its sparse retry maps positions among the unrated samples back
    # through an unsorted `list(set(...))` (so it picks unrelated samples), returns (id, text) tuples when
    # taking all, and ignores the configured top share. Ours: sorted candidates, indices, `top_share`.
    candidates = _candidates(activations.size, exclude)
    if candidates.size <= num_samples:
        return ActivationSubset(candidates, (), np.empty(0, dtype=np.int64), 0)

    # Deviation from the FADE reference: ties are ordered by sample index (stable sort); the reference
    # uses torch.argsort, whose order of ties is implementation-defined. With ties the same seed draws
    # samples of the same activation values, but possibly other sample ids.
    ascending = np.argsort(activations[candidates], kind="stable")
    num_bins = len(percentiles) - 1
    # The reference's expressions, float rounding included.
    quota = int(num_samples * (1 - top_share) // num_bins)
    bin_draws = []
    for low, high in zip(percentiles, percentiles[1:]):
        members = ascending[int(low / 100 * ascending.size) : int(high / 100 * ascending.size)]
        # The reference draws only from bins larger than the quota: mirrored so the streams stay in step.
        bin_draws.append(rng.choice(members, quota, replace=False) if members.size > quota else members)
    drawn = np.concatenate(bin_draws).astype(np.int64)
    remaining = num_samples - drawn.size
    # Deviation from the FADE reference: it adds the `remaining` highest samples including ones already
    # drawn and then de-duplicates, so it rates fewer than asked whenever the top bin overlaps; we add
    # the highest samples not yet drawn, so exactly `num_samples` are chosen. (With remaining == 0, i.e.
    # top_share == 0, the reference's `sorted[-0:]` would even add every sample.)
    not_drawn = np.ones(ascending.size, dtype=bool)
    not_drawn[drawn] = False
    descending = ascending[::-1]
    top_fill = descending[not_drawn[descending]][:remaining]
    return ActivationSubset(
        # Deviation from the FADE reference: sorted by sample index instead of its hash (set) order.
        indices=np.sort(candidates[np.concatenate([drawn, top_fill])]),
        bin_draws=tuple(candidates[draw] for draw in bin_draws),
        top_fill=candidates[top_fill],
        quota_per_bin=quota,
    )


def _candidates(num_items: int, exclude: Iterable[int]) -> np.ndarray:
    excluded = np.asarray(list(exclude), dtype=np.int64)
    outside = excluded[(excluded < 0) | (excluded >= num_items)]
    if outside.size:
        raise EvaluationError(
            f"exclude holds sample indices outside 0..{num_items - 1} (e.g. {int(outside[0])}); "
            "give positions in the activations array"
        )
    keep = np.ones(num_items, dtype=bool)
    keep[excluded] = False
    return np.flatnonzero(keep).astype(np.int64)


def random_subset(num_items: int, num_samples: int, *, rng: Rng) -> np.ndarray:
    """`num_samples` distinct indices in 0..num_items-1 drawn at random (faithfulness prompts).

    Same call as the reference's `np.random.choice(len(dataset), num_samples, replace=False)`.
    """
    if num_samples < 1:
        raise EvaluationError(f"num_samples must be at least 1, got {num_samples}")
    if num_items <= num_samples:
        # Deviation from the FADE reference: it raises (numpy ValueError) when the corpus has fewer
        # samples than asked; we take them all.
        return np.arange(num_items, dtype=np.int64)
    return np.asarray(rng.choice(num_items, num_samples, replace=False), dtype=np.int64)
