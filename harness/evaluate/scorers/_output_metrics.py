"""The output-centric scorers' numbers as pure functions (docs/scorers/output-centric.md): arrays in, numbers out.

Arad et al. (2025), technion-cs-nlp/saes-are-good-for-steering: `vocab_input_score` (src/input_score.py) and
`vocab_output_score` (src/output_score.py, `get_output_score`). Gur-Arieh et al. (2025), yoavgur/Feature-
Descriptions: `mean_kl` (the notebook's `kl_div` and `get_kl_div`) and the clamp search's step (`next_bracket`,
its `get_activation_for_kl` on a continuous bracket).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EPS = 1e-10  # Gur-Arieh et al.'s kl_div clamps both distributions at this


def vocab_input_score(peak_tokens: Sequence[int], projection_tokens: Sequence[int]) -> float:
    """Arad et al.'s input score: the share of the top activating examples whose peak token is one of the top
    tokens of the feature's vocabulary projection.

    Args:
        peak_tokens: the vocabulary id of each example's most activating token.
        projection_tokens: the feature's top-k tokens of its vocabulary projection.
    """
    if not peak_tokens:
        raise ValueError("vocab_input_score needs at least one example")
    wanted = set(int(token) for token in projection_tokens)
    return float(np.mean([int(token) in wanted for token in peak_tokens]))


def vocab_output_score(probabilities: np.ndarray, projection_tokens: Sequence[int]) -> float:
    """Arad et al.'s output score from the next-token distribution after steering:
    max_t p(t) x (1 - min_t rank(t) / |V|) over the projection's top tokens t, rank 0 being the most probable
    token of that same (steered) distribution.

    Args:
        probabilities: (vocab,) the steered next-token distribution.
        projection_tokens: the feature's top-k tokens of its vocabulary projection.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    tokens = np.asarray(projection_tokens, dtype=np.int64)
    # rank of t = how many tokens are more probable (ties ranked as a stable descending sort would, by id)
    order = np.argsort(-probabilities, kind="stable")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(order.size)
    return float(probabilities[tokens].max() * (1.0 - ranks[tokens].min() / probabilities.size))


def mean_kl(clean: np.ndarray, steered: np.ndarray, mask: np.ndarray) -> float:
    """Gur-Arieh et al.'s KL of a clamp: KL(clean || steered) at each prompt position, averaged over each
    prompt's positions, then over the prompts.

    Args:
        clean: (prompts, positions, vocab) next-token distributions of the unsteered model.
        steered: the same with the feature clamped.
        mask: (prompts, positions) True at the prompts' tokens (False at padding).
    """
    p = np.clip(np.asarray(clean, dtype=np.float64), _EPS, None)
    q = np.clip(np.asarray(steered, dtype=np.float64), _EPS, None)
    per_position = np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    mask = np.asarray(mask, dtype=bool)
    return float(np.mean([row[keep].mean() for row, keep in zip(per_position, mask)]))


def next_bracket(low: float, high: float, value: float, kl: float, target: float) -> tuple[float, float]:
    """One bisection step of the clamp search on |value| in [low, high]: a clamp whose KL is above the target
    becomes the bracket's upper end, else its lower end (Gur-Arieh et al.'s `get_activation_for_kl`)."""
    return (low, value) if kl > target else (value, high)


def within(kl: float, target: float, tolerance: float) -> bool:
    """Whether the clamp search may stop: target <= kl <= target + tolerance (the reference's stop)."""
    return target <= kl <= target + tolerance
