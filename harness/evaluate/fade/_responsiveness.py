"""Responsiveness and Purity: does the feature fire on natural text the rater says shows the concept, and only there?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.config import FadeConfig
from harness.evaluate.fade._calls import FeatureCalls
from harness.evaluate.fade._metrics import RATING_PRESENT, GiniAP, responsiveness_purity
from harness.evaluate.fade.rating import UNRATED, rate_sequences
from harness.evaluate.fade.sampling import activation_based_subset


@dataclass(frozen=True)
class RatedNaturalSamples:
    """The natural samples sent to the rater, aligned arrays in the order they were asked.

    `positions` index the corpus arrays; `rounds` is 0 for the first draw and k for the k-th sparse
    retry; `ratings` is 0, 1, 2, or UNRATED when no valid rating came back after the retries.
    """

    positions: np.ndarray
    rounds: np.ndarray
    ratings: np.ndarray

    @property
    def rated(self) -> np.ndarray:
        return self.ratings != UNRATED


async def rate_natural_samples(
    calls: FeatureCalls,
    concept: str,
    activations: np.ndarray,
    texts: list[str],
    sample_ids: np.ndarray,
    fade: FadeConfig,
    rng: np.random.Generator,
) -> RatedNaturalSamples:
    """Choose natural samples by activation, rate them, and draw more while the concept stays sparse.

    Round 0 rates `num_samples` samples chosen by `activation_based_subset`, retrying failed ratings
    `max_failed_retries` times. While fewer than `retry_sparse_threshold` samples are rated 2 (at most
    `max_sparse_retries` times), another `num_samples` not yet rated are drawn the same way and rated
    once, without retries of their failures, as in the reference.

    Args:
        calls: the feature's LLM calls.
        concept: the description.
        activations: the feature's per-sample activation on every natural sample.
        texts: the natural samples, aligned with `activations`.
        sample_ids: corpus sample ids, aligned; the rater sees them as sequence ids.
        fade: FADE settings.
        rng: the feature's random source.
    """
    position_of = {int(sample_id): position for position, sample_id in enumerate(sample_ids.tolist())}
    asked: dict[int, int] = {}  # position -> round
    ratings: dict[int, int] = {}  # position -> rating
    for round_index in range(1 + fade.max_sparse_retries):
        rated_2 = sum(rating == RATING_PRESENT for rating in ratings.values())
        if round_index and rated_2 >= fade.retry_sparse_threshold:
            break
        chosen = activation_based_subset(
            activations,
            fade.num_samples,
            rng=rng,
            percentiles=fade.percentiles,
            top_share=fade.top_share,
            exclude=list(ratings),
        ).indices
        if chosen.size == 0:
            break
        round_ratings = await rate_sequences(
            calls,
            concept,
            {int(sample_ids[position]): texts[position] for position in chosen},
            batch_size=fade.rating_batch_size,
            max_failed_retries=fade.max_failed_retries if round_index == 0 else 0,
        )
        for position in chosen.tolist():
            asked.setdefault(position, round_index)
        ratings.update({position_of[sample_id]: rating for sample_id, rating in round_ratings.items()})
    positions = np.fromiter(asked, dtype=np.int64, count=len(asked))
    return RatedNaturalSamples(
        positions=positions,
        rounds=np.fromiter(asked.values(), dtype=np.int64, count=len(asked)),
        ratings=np.array([ratings.get(position, UNRATED) for position in positions.tolist()], dtype=np.int64),
    )


def score_responsiveness(activations: np.ndarray, samples: RatedNaturalSamples) -> GiniAP:
    """Responsiveness (`gini`) and Purity (`average_precision`) on the rated samples, the unrated left out."""
    rated = samples.rated
    return responsiveness_purity(activations[samples.positions[rated]], samples.ratings[rated])
