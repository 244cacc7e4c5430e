"""Faithfulness: does steering the feature make the subject model produce the concept?"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.config import FaithfulnessConfig
from harness.evaluate.fade._calls import FeatureCalls
from harness.evaluate.fade._metrics import (
    RATING_PRESENT,
    VALID_RATINGS,
    FaithfulnessResult,
    faithfulness,
    p2_from_ratings,
)
from harness.evaluate.fade.continuations import Continuations
from harness.evaluate.fade.rating import UNRATED, rate_sequences
from harness.evaluate.fade.sampling import random_subset
from harness.llm.per_loop import gather_or_cancel

# Tells the prompt stream apart from the per-feature streams seeded with (seed, feature): no feature index
# reaches it.
_PROMPT_STREAM = 2**40

# (prompt positions, factors) -> continuations[factor][prompt], generated on the subject model.
Generate = Callable[[Sequence[int], Sequence[float]], Awaitable[Continuations]]


@dataclass(frozen=True)
class RatedContinuations:
    """One row per (factor, prompt): aligned arrays; `rounds` is 0, or k for the k-th sparse retry."""

    factors: np.ndarray
    positions: np.ndarray
    rounds: np.ndarray
    texts: list[str]
    ratings: np.ndarray  # 0, 1, 2 or UNRATED

    @classmethod
    def concatenate(cls, parts: Sequence[RatedContinuations]) -> RatedContinuations:
        return cls(
            factors=np.concatenate([part.factors for part in parts]),
            positions=np.concatenate([part.positions for part in parts]),
            rounds=np.concatenate([part.rounds for part in parts]),
            texts=[text for part in parts for text in part.texts],
            ratings=np.concatenate([part.ratings for part in parts]),
        )

    def rated_2(self, factor: float) -> int:
        return int(np.count_nonzero((self.factors == factor) & (self.ratings == RATING_PRESENT)))

    def by_factor(self) -> dict[float, np.ndarray]:
        """The ratings (UNRATED included) of each factor's continuations."""
        return {factor: self.ratings[self.factors == factor] for factor in np.unique(self.factors).tolist()}

    def rating_shares(self) -> dict[float, dict[int, float]]:
        """Per factor, the share of each rating among its rated continuations (p2 is the share of 2)."""
        shares = {}
        for factor, ratings in self.by_factor().items():
            rated = ratings[ratings != UNRATED]
            shares[factor] = {r: float(np.mean(rated == r)) if rated.size else 0.0 for r in VALID_RATINGS}
        return shares


@dataclass(frozen=True)
class FaithfulnessOutcome:
    result: FaithfulnessResult
    p2_by_factor: dict[float, float]
    continuations: RatedContinuations
    generate_calls: int


async def score_faithfulness(
    calls: FeatureCalls,
    concept: str,
    sample_ids: np.ndarray,
    generate: Generate,
    settings: FaithfulnessConfig,
    rating_batch_size: int,
    prompt_rounds: Sequence[np.ndarray],
) -> FaithfulnessOutcome:
    """Steer the feature on natural prompts under every factor, rate the continuations, score.

    All factors of a round are asked for together (`generate`, the evaluation's ContinuationEngine); each
    factor's continuations are rated on their own, as the reference does, all factors at once. While a
    factor has fewer than `retry_sparse_threshold` continuations rated 2 (at most `max_sparse_retries`
    times), the next round's unused prompts are continued under those factors.

    Args:
        calls: the feature's LLM calls.
        concept: the description.
        sample_ids: corpus sample ids of the natural samples; the rater sees them as sequence ids.
        generate: runs the steered generation on the subject model.
        settings: faithfulness settings.
        rating_batch_size: continuations per rating call.
        prompt_rounds: the natural samples' positions continued in each round, shared by every feature
            (`faithfulness_prompts`).
    """
    parts: list[RatedContinuations] = []
    factors = list(settings.modification_factors)
    generate_calls = 0
    for round_index, prompts in enumerate(prompt_rounds):
        if round_index:
            # Deviation from the FADE reference: its faithfulness sparse settings never act (the retry
            # needs activations, which it does not pass); ours continue more prompts for sparse factors.
            so_far = RatedContinuations.concatenate(parts)
            factors = [factor for factor in factors if so_far.rated_2(factor) < settings.retry_sparse_threshold]
            if not factors:
                break
        continuations = await generate(prompts.tolist(), factors)
        generate_calls += continuations.generate_calls
        ids = [int(sample_id) for sample_id in sample_ids[prompts]]
        # Deviation from the FADE reference: its retry of failed continuation ratings looks the text up as
        # `dataset[id][1]`, which for a continuation is its second character; ours asks about the continuation.
        ratings = await gather_or_cancel(
            *(
                rate_sequences(
                    calls,
                    concept,
                    dict(zip(ids, texts)),
                    batch_size=rating_batch_size,
                    max_failed_retries=settings.max_failed_retries if round_index == 0 else 0,
                )
                for texts in continuations.texts
            )
        )
        parts.append(
            RatedContinuations(
                factors=np.repeat(np.asarray(factors, dtype=np.float64), prompts.size),
                positions=np.tile(prompts, len(factors)),
                rounds=np.full(len(factors) * prompts.size, round_index, dtype=np.int64),
                texts=[text for texts in continuations.texts for text in texts],
                ratings=np.array([by_id.get(i, UNRATED) for by_id in ratings for i in ids], dtype=np.int64),
            )
        )
    table = RatedContinuations.concatenate(parts)
    p2 = p2_from_ratings({factor: ratings[ratings != UNRATED] for factor, ratings in table.by_factor().items()})
    return FaithfulnessOutcome(faithfulness(p2), p2, table, generate_calls)


def faithfulness_prompts(num_items: int, settings: FaithfulnessConfig, seed: int) -> list[np.ndarray]:
    """The natural samples' positions each round continues: `num_samples` drawn at random, then for every
    sparse retry as many unused ones (rounds stop when none are left).

    Deviation from the FADE reference: it draws each feature's prompts from the global random stream after
    the features before it; ours are drawn once per evaluation from the seed and shared by every feature
    (E11), so the prompts' work is shared across features and a feature's result depends on no other.
    """
    rng = np.random.default_rng([seed, _PROMPT_STREAM])
    rounds = [random_subset(num_items, settings.num_samples, rng=rng)]
    for _ in range(settings.max_sparse_retries):
        unused = np.setdiff1d(np.arange(num_items), np.concatenate(rounds))
        if unused.size == 0:
            break
        rounds.append(unused[random_subset(unused.size, settings.num_samples, rng=rng)])
    return rounds
