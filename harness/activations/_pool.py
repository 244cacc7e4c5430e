"""Examples beyond the top-k, with per-token activations: what stratified/random selections and contrast need.

For each feature: a few samples drawn at random from each activation quantile bin of its active samples,
plus its least-active samples (contrast). Their per-token values are the ones the activation pass kept
(`ActivationSet.token_values`); only the tokenizer runs again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from harness.activations._forward import display_tokens, ignored_mask, tokenize
from harness.activations._reduce import max_abs_per_sample
from harness.activations._tokens import kept_values
from harness.activations.types import ActivatingExample, ActivationSet
from harness.config import ActivationConfig


def choose_pool_rows(
    per_sample: np.ndarray, *, per_quantile: int, num_quantiles: int, num_low: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per feature (column), corpus rows: random draws per quantile bin of the active rows, then the least active.

    Args:
        per_sample: (N, F) per-sample activations.
        per_quantile: rows drawn from each bin (fewer when a bin is smaller).
        num_quantiles: bins over the active rows (value > 0), by rank.
        num_low: rows of smallest |activation| (contrast examples).
        rng: the source of the random draws.
    """
    chosen = []
    for column in per_sample.T:
        active = np.flatnonzero(column > 0)
        ordered = active[np.argsort(column[active], kind="stable")]
        rows: list[int] = []
        for part in np.array_split(ordered, num_quantiles) if ordered.size else []:
            take = min(per_quantile, part.size)
            rows.extend(rng.choice(part, size=take, replace=False).tolist())
        least_active = np.argsort(np.abs(column), kind="stable")
        rows.extend(int(row) for row in least_active[:num_low] if row not in rows)
        chosen.append(np.array(rows, dtype=np.int64))
    return chosen


def pool_examples(
    tokenizer: Any,
    corpus_df: pd.DataFrame,
    activation_set: ActivationSet,
    config: ActivationConfig,
    *,
    per_quantile: int = 5,
    num_quantiles: int = 4,
    num_low: int = 10,
    seed: int = 0,
) -> dict[int, list[ActivatingExample]]:
    """Feature -> examples across its activation range and its least active samples, with per-token values.

    Args:
        tokenizer: the subject model's tokenizer.
        corpus_df: the same sample table, in the same order as `activation_set.sample_ids`.
        activation_set: the engine's result (its per-sample values pick the rows, its kept per-token values fill them).
        config: tokenization and position rules (the same as the extraction's).
        per_quantile, num_quantiles, num_low: how many rows of each kind (see `choose_pool_rows`).
        seed: seed of the random draws.
    """
    rows_per_feature = choose_pool_rows(
        activation_set.per_sample,
        per_quantile=per_quantile,
        num_quantiles=num_quantiles,
        num_low=num_low,
        rng=np.random.default_rng(seed),
    )
    token_values = kept_values(activation_set)
    texts = corpus_df["text"].tolist()
    union = np.unique(np.concatenate(rows_per_feature)) if rows_per_feature else np.zeros(0, dtype=np.int64)
    wanted = {int(row): [] for row in union}
    for f, rows in enumerate(rows_per_feature):
        for row in rows.tolist():
            wanted[row].append(f)
    pools: dict[int, list[ActivatingExample]] = {int(feature): [] for feature in activation_set.feature_ids}
    for start in range(0, union.size, config.batch_size):
        batch_rows = union[start : start + config.batch_size].tolist()
        batch_texts = [texts[row] for row in batch_rows]
        token_acts = token_values.read(batch_rows)
        valid = ~ignored_mask(tokenizer, tokenize(tokenizer, batch_texts, config.max_length), config)
        per_sample, positions = max_abs_per_sample(token_acts, valid)
        token_acts_np = token_acts.numpy()
        shown = display_tokens(tokenizer, batch_texts, config)
        for i, (row, (tokens, ignored_positions)) in enumerate(zip(batch_rows, shown)):
            for f in wanted[row]:
                activations = token_acts_np[i, : len(tokens), f].copy()
                position = int(positions[i, f])
                pools[int(activation_set.feature_ids[f])].append(
                    ActivatingExample(
                        sample_id=int(activation_set.sample_ids[row]),
                        text=texts[row],
                        tokens=tokens,
                        activations=activations,
                        max_activation=float(per_sample[i, f]),
                        max_position=position,
                        ignored_positions=ignored_positions,
                    )
                )
    return pools
