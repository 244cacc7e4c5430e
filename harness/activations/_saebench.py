"""SAEBench's autointerp examples (sae-bench 0.6.0, sae_bench/evals/autointerp/main.py:394-513).

Per feature, from its per-token activations over the whole corpus: the top tokens (no two within `buffer`
of each other in a sample, sae_bench_utils/indexing_utils.py:7-44), tokens importance-sampled by squared
activation among those below the lowest top value (indexing_utils.py:47-68; main.py:454-464), random
tokens (main.py:420-434, their values written as zeros, :482-483), each shown as the window of
2 x buffer + 1 tokens around it (indexing_utils.py:71-88). Draws follow SAEBench's order on one torch
generator and one Python Random seeded with `random_seed` (main.py:524-525), feature by feature.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.activations._forward import display_tokens
from harness.activations._tokens import kept_values
from harness.activations.types import ActivatingExample, ActivationSet, SAEBenchSample
from harness.config import ActivationConfig, SAEBenchConfig


@dataclass(frozen=True)
class Draw:
    """(row, centre) positions of one feature's examples, and the activity threshold of its scoring examples."""

    generation: list[tuple[int, int]]
    scoring: list[tuple[int, int]]
    random_count: int  # the last `random_count` scoring positions before the shuffle were random ones
    order: list[int]  # the shuffle: scoring position i is shown at place order.index(i)
    act_threshold: float


def largest_positions(acts: torch.Tensor, k: int, buffer: int, no_overlap: bool) -> list[tuple[int, int]]:
    """The k largest tokens at least `buffer` from either end of their sample (indexing_utils.py:25-44);
    with `no_overlap`, a token within `buffer` of a chosen one in its sample is passed over. Ties: corpus order."""
    inner = acts[:, buffer:-buffer]
    order = inner.flatten().argsort(descending=True, stable=True)
    chosen: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for index in order.tolist():
        row, col = divmod(index, inner.size(1))
        col += buffer
        if no_overlap and (row, col) in seen:
            continue
        chosen.append((row, col))
        seen.update((row, col + offset) for offset in range(-buffer, buffer + 1))
        if len(chosen) == k:
            break
    return chosen


def saebench_draw(
    acts: torch.Tensor, settings: SAEBenchConfig, generator: torch.Generator, rng: random.Random
) -> Draw | None:
    """One feature's draw from its (samples, tokens) activations, advancing `generator` and `rng` as SAEBench
    advances its global torch and Python generators (main.py:420-510); None for a feature SAEBench skips
    (nothing left below its top examples, main.py:456-457)."""
    buffer = settings.buffer
    rows, length = acts.shape
    n_random = settings.n_random_ex_for_scoring
    random_rows = torch.randint(0, rows, (n_random,), generator=generator)
    random_cols = torch.randint(buffer, length - buffer, (n_random,), generator=generator)
    n_top = settings.n_top_ex_for_generation + settings.n_top_ex_for_scoring
    top = largest_positions(acts, n_top, buffer, settings.no_overlap)
    top_values = torch.stack([acts[row, col - buffer : col + buffer + 1] for row, col in top])
    act_threshold = settings.act_threshold_frac * float(top_values.max())
    lowest_top = float(top_values[:, buffer].min())
    below = torch.where(acts >= lowest_top, 0.0, acts)
    if float(below[:, buffer:-buffer].max()) < 1e-6:
        return None
    n_iw = settings.n_iw_sampled_ex_for_generation + settings.n_iw_sampled_ex_for_scoring
    weights = below[:, buffer:-buffer].pow(2)
    picked = torch.multinomial(weights.flatten() / weights.sum(), n_iw, replacement=False, generator=generator)
    iw = [(int(i) // weights.size(1), int(i) % weights.size(1) + buffer) for i in picked]
    top_split = torch.randperm(n_top, generator=generator).tolist()
    iw_split = torch.randperm(n_iw, generator=generator).tolist()
    n_top_gen, n_iw_gen = settings.n_top_ex_for_generation, settings.n_iw_sampled_ex_for_generation
    scoring = [top[i] for i in top_split[n_top_gen:]] + [iw[i] for i in iw_split[n_iw_gen:]]
    scoring += list(zip(random_rows.tolist(), random_cols.tolist()))
    order = list(range(len(scoring)))
    rng.shuffle(order)  # Examples(shuffle=True): random.shuffle (main.py:100-103)
    return Draw(
        generation=[top[i] for i in top_split[:n_top_gen]] + [iw[i] for i in iw_split[:n_iw_gen]],
        scoring=scoring,
        random_count=n_random,
        order=order,
        act_threshold=act_threshold,
    )


def saebench_examples(
    tokenizer: Any,
    corpus_df: pd.DataFrame,
    activation_set: ActivationSet,
    activations: ActivationConfig,
    settings: SAEBenchConfig,
    *,
    progress: bool = True,
) -> dict[int, SAEBenchSample]:
    """Feature -> SAEBench's generation and scoring examples over the corpus (features SAEBench skips are absent).

    Holds every feature's per-token activations of the whole corpus at once, (samples, max_length, features)
    float32, as SAEBench does (its `collect_sae_activations`, in bfloat16), read from the values the activation
    pass kept (`ActivationSet.token_values`), not through the model again. Samples are right-padded to
    `activations.max_length` with zero activations; a window reaching past a sample's end is cut there.

    Args:
        tokenizer: the subject model's tokenizer.
        corpus_df: the same sample table, in the same order as `activation_set.sample_ids`.
        activation_set: the engine's result (its feature ids and kept per-token values).
        activations: tokenization and position rules (the same as the extraction's).
        settings: SAEBench's counts, buffer and seed.
        progress: show a progress bar.
    """
    token_values = kept_values(activation_set)
    texts = corpus_df["text"].tolist()
    every = torch.zeros(len(texts), activations.max_length, activation_set.feature_ids.size)
    shown: list[tuple[list[str], tuple[int, ...]]] = []
    with tqdm(total=len(texts), unit="sample", desc="saebench examples", disable=not progress) as bar:
        for start in range(0, len(texts), activations.batch_size):
            batch = texts[start : start + activations.batch_size]
            token_acts = token_values.read(range(start, start + len(batch)))
            every[start : start + len(batch), : token_acts.size(1)] = token_acts
            shown += display_tokens(tokenizer, batch, activations)
            bar.update(len(batch))
    generator = torch.Generator().manual_seed(settings.random_seed)
    rng = random.Random(settings.random_seed)
    samples = {}
    for f, feature in enumerate(activation_set.feature_ids.tolist()):
        acts = every[:, :, f]
        draw = saebench_draw(acts, settings, generator, rng)
        if draw is None:
            continue

        def window(row: int, centre: int, zero: bool, acts: torch.Tensor = acts) -> ActivatingExample:
            tokens, ignored = shown[row]
            begin, end = centre - settings.buffer, min(centre + settings.buffer + 1, len(tokens))
            values = np.zeros(max(end - begin, 0), dtype=np.float32)
            if not zero:
                values = acts[row, begin:end].numpy().copy()
            peak = int(np.argmax(values)) if values.size else 0
            return ActivatingExample(
                sample_id=int(activation_set.sample_ids[row]),
                text="".join(tokens[begin:end]),
                tokens=tokens[begin:end],
                activations=values,
                max_activation=float(values[peak]) if values.size else 0.0,
                max_position=peak,
                ignored_positions=tuple(p - begin for p in ignored if begin <= p < end),
            )

        generation = sorted(
            (window(r, c, False) for r, c in draw.generation), key=lambda e: -float(e.activations.max())
        )
        first_random = len(draw.scoring) - draw.random_count
        scoring = [window(r, c, i >= first_random) for i, (r, c) in enumerate(draw.scoring)]
        shuffled = [scoring[i] for i in draw.order]
        samples[int(feature)] = SAEBenchSample(
            generation=tuple(generation),
            scoring=tuple(shuffled),
            active=tuple(bool((example.activations > draw.act_threshold).any()) for example in shuffled),
        )
    return samples
