"""delphi's test-set sampling (eai-delphi 0.1.3): fixed windows, rank slices over every active window, random inactive ones.

delphi cuts its token cache into windows of `example_ctx_len` tokens (delphi/latents/constructors.py:249-252),
ranks every window where a latent is nonzero by its largest value (constructors.py:108-119, `_top_k_pools`
:76), drops the latent below `min_examples` active windows (:288-293), draws its test set from equal rank
slices (delphi/latents/samplers.py:26-54, seeded 22) and picks random windows where it is zero everywhere
(constructors.py:643-683, seeded 42, drawn with replacement). The rank and window picks below are pure
functions of the counts, so they equal delphi's for the same counts. `delphi_windows` reads the per-token
values the activation pass kept (`ActivationSet.token_values`) twice, no model: over the whole corpus keeping
each active (window, feature) pair's largest value (12 bytes a pair), then the samples holding a chosen window.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.activations._forward import display_tokens, tokenize
from harness.activations._tokens import kept_values
from harness.activations.types import ActivatingExample, ActivationSet, PerTokenValues, WindowSample
from harness.config import ActivationConfig, DelphiConventionConfig

_SLICE_SEED = 22  # samplers.py:27 (split_quantiles' default; test() passes none, samplers.py:108)
_INACTIVE_SEED = 42  # constructors.py:237 (constructor's default; loader.py:436 passes none)


def slice_ranks(num_active: int, num_test: int, num_slices: int) -> list[tuple[int, int]]:
    """(rank, slice) of delphi's test windows among `num_active` ranked ones (rank 0 = the highest), slice by slice.

    As samplers.py:32-52: slices of `num_active // num_slices` ranks (the remainder's lowest ranks are never
    drawn, :34,39), `num_test // num_slices` drawn from each without replacement by one Random(22) in
    slice order; a slice smaller than that gives all its ranks (:42-43).
    """
    rng = random.Random(_SLICE_SEED)
    size, per_slice = num_active // num_slices, num_test // num_slices
    chosen = []
    for part in range(num_slices):
        ranks = list(range(part * size, (part + 1) * size))
        picked = ranks if len(ranks) < per_slice else rng.sample(ranks, per_slice)
        chosen += [(rank, part) for rank in picked]
    return chosen


def inactive_picks(num_inactive: int, count: int) -> list[int]:
    """Indices (into the inactive windows in corpus order) of delphi's random non-activating windows.

    As constructors.py:661-674: `count` draws with replacement (torch.randint after manual_seed(42)), so a
    window can come twice; none at all when fewer than `count` windows are inactive (:667-669).
    """
    if count == 0 or num_inactive < count:
        return []
    generator = torch.Generator().manual_seed(_INACTIVE_SEED)
    return torch.randint(0, num_inactive, size=(count,), generator=generator).tolist()


def nth_missing(present: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The `indices`-th non-negative integers absent from sorted, distinct `present` (the inactive windows)."""
    before = present - np.arange(present.size)  # integers missing below each present one
    return indices + np.searchsorted(before, indices, side="right")


def window_maxima(token_acts: torch.Tensor, window: int) -> torch.Tensor:
    """(batch, windows, F): each window's largest nonzero activation, -inf where the feature is zero throughout."""
    batch, length, features = token_acts.shape
    padded = torch.nn.functional.pad(token_acts, (0, 0, 0, (-length) % window))
    nonzero = padded.masked_fill(padded == 0, float("-inf"))
    return nonzero.view(batch, -1, window, features).amax(dim=2)


def delphi_windows(
    tokenizer: Any,
    corpus_df: pd.DataFrame,
    activation_set: ActivationSet,
    activations: ActivationConfig,
    settings: DelphiConventionConfig,
    *,
    progress: bool = True,
) -> dict[int, WindowSample]:
    """Feature -> delphi's test windows and random inactive windows over the corpus.

    Each sample (cut at `activations.max_length`) is cut into windows of `settings.example_ctx_len` tokens
    from its first token; its last window is shorter when its length is not a multiple (delphi's cache
    contexts always are). Ties in a window's largest value rank by corpus order.

    Args:
        tokenizer: the subject model's tokenizer.
        corpus_df: the same sample table, in the same order as `activation_set.sample_ids`.
        activation_set: the engine's result (its feature ids and kept per-token values).
        activations: tokenization and position rules (the same as the extraction's).
        settings: window length and counts.
        progress: show a progress bar.
    """
    window = settings.example_ctx_len
    token_values = kept_values(activation_set)
    texts = corpus_df["text"].tolist()
    lengths = np.zeros(len(texts), dtype=np.int64)
    window_ids, feature_index, maxima = [], [], []
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    with tqdm(total=len(texts), unit="sample", desc="delphi windows", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(texts), activations.batch_size):
            batch_texts = texts[start : start + activations.batch_size]
            encoded = tokenize(tokenizer, batch_texts, activations.max_length)
            lengths[start : start + len(batch_texts)] = encoded["attention_mask"].sum(dim=1).numpy()
            values = window_maxima(token_values.read(range(start, start + len(batch_texts))), window)
            rows, windows, columns = torch.nonzero(torch.isfinite(values), as_tuple=True)
            window_ids.append((rows.cpu().numpy() + start, windows.cpu().numpy()))
            feature_index.append(columns.cpu().numpy().astype(np.int32))
            maxima.append(values[rows, windows, columns].float().cpu().numpy())
            bar.update(len(batch_texts))
    offsets[1:] = np.cumsum(-(-lengths // window))
    row_of = np.concatenate([row for row, _ in window_ids]) if window_ids else np.zeros(0, dtype=np.int64)
    within = np.concatenate([w for _, w in window_ids]) if window_ids else np.zeros(0, dtype=np.int64)
    ids = offsets[row_of] + within
    columns = np.concatenate(feature_index) if feature_index else np.zeros(0, dtype=np.int32)
    values = np.concatenate(maxima) if maxima else np.zeros(0, dtype=np.float32)
    order = np.lexsort((ids, -values, columns))  # per feature: descending largest value, then corpus order
    counts = np.bincount(columns, minlength=activation_set.feature_ids.size)
    num_windows = int(offsets[-1])

    chosen: dict[int, tuple[list[tuple[int, int]], list[int], int]] = {}
    for f, ranked in enumerate(np.split(ids[order], np.cumsum(counts)[:-1])):
        if ranked.size < settings.min_examples:
            chosen[f] = ([], [], int(ranked.size))
            continue
        test = [
            (int(ranked[rank]), part)
            for rank, part in slice_ranks(ranked.size, settings.n_examples_test, settings.n_quantiles)
        ]
        picks = np.array(inactive_picks(num_windows - ranked.size, settings.n_non_activating), dtype=np.int64)
        quiet = nth_missing(np.sort(ranked), picks).tolist() if picks.size else []
        chosen[f] = (test, quiet, int(ranked.size))
    return _cut_windows(
        tokenizer, token_values, texts, activation_set, activations, window, offsets, chosen, num_windows
    )


def _cut_windows(
    tokenizer: Any,
    token_values: PerTokenValues,
    texts: list[str],
    activation_set: ActivationSet,
    activations: ActivationConfig,
    window: int,
    offsets: np.ndarray,
    chosen: dict[int, tuple[list[tuple[int, int]], list[int], int]],
    num_windows: int,
) -> dict[int, WindowSample]:
    """The chosen windows with tokens (and, for the test windows, the feature's values): the second read, of the
    kept values for the samples holding a test window, of the tokenizer alone for the others."""
    requests: dict[int, list[tuple[int, int, bool, int]]] = {}  # row -> (feature column, slot, is test, start)
    for f, (test, quiet, _) in chosen.items():
        for slot, window_id in enumerate([*(w for w, _ in test), *quiet]):
            row = int(np.searchsorted(offsets, window_id, side="right")) - 1
            requests.setdefault(row, []).append((f, slot, slot < len(test), (window_id - int(offsets[row])) * window))
    cut: dict[int, list[ActivatingExample | None]] = {f: [None] * (len(t) + len(q)) for f, (t, q, _) in chosen.items()}
    # rows holding a test window need their values; rows holding only inactive windows need their tokens only
    measured = sorted(row for row, wanted in requests.items() if any(is_test for _, _, is_test, _ in wanted))
    unmeasured = sorted(set(requests) - set(measured))
    batches = [
        (measured[i : i + activations.batch_size], True) for i in range(0, len(measured), activations.batch_size)
    ]
    batches += [
        (unmeasured[i : i + activations.batch_size], False) for i in range(0, len(unmeasured), activations.batch_size)
    ]
    for batch_rows, measure in batches:
        batch_texts = [texts[row] for row in batch_rows]
        token_acts = token_values.read(batch_rows) if measure else None
        for i, (row, (tokens, ignored)) in enumerate(
            zip(batch_rows, display_tokens(tokenizer, batch_texts, activations))
        ):
            for f, slot, is_test, begin in requests[row]:
                end = min(begin + window, len(tokens))
                values = (
                    token_acts[i, begin:end, f].numpy().copy()
                    if is_test and token_acts is not None
                    else np.zeros(end - begin, dtype=np.float32)  # delphi writes zeros (constructors.py:680)
                )
                peak = int(np.argmax(values)) if values.size else 0
                cut[f][slot] = ActivatingExample(
                    sample_id=int(activation_set.sample_ids[row]),
                    text="".join(tokens[begin:end]),
                    tokens=tokens[begin:end],
                    activations=values,
                    max_activation=float(values[peak]) if values.size else 0.0,
                    max_position=peak,
                    ignored_positions=tuple(p - begin for p in ignored if begin <= p < end),
                )
    samples = {}
    for f, (test, _, num_active) in chosen.items():
        examples = [example for example in cut[f] if example is not None]
        samples[int(activation_set.feature_ids[f])] = WindowSample(
            num_windows=num_windows,
            num_active=num_active,
            test=tuple(examples[: len(test)]),
            test_slices=tuple(part for _, part in test),
            not_active=tuple(examples[len(test) :]),
        )
    return samples
