"""Every selected feature's per-token values, kept by the activation pass so that what derives from them
(pools, delphi's windows, SAEBench's examples) needs the tokenizer only, no second pass through the model.

Per shard, next to its per-sample values: the nonzero token activations (exact zeros dropped, which include
every ignored position) sorted by sample, token and feature. Per sample its token count (`lengths`, int32)
and number of kept values (`counts`, int64); per value its token position and feature column in the
smallest unsigned type that holds them (uint16 up to 65,536) and the value in float32, the engine's dtype:
12 bytes a sample plus 8 bytes a kept value. A dense neuron site keeps every value, an SAE only its active
latents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from harness.activations._store import ArrayStore, CacheCorrupt
from harness.activations.types import ActivationSet, PerTokenValues
from harness.errors import CacheError

PART_ARRAYS = ("lengths", "counts", "positions", "columns", "values")


def _index_dtype(limit: int) -> type[np.unsignedinteger]:
    return np.uint16 if limit <= 2**16 else np.uint32


def empty_part(max_length: int, num_features: int) -> dict[str, np.ndarray]:
    """The kept values of no sample (the arrays `sparse_part` makes, with no rows)."""
    return {
        "lengths": np.zeros(0, dtype=np.int32),
        "counts": np.zeros(0, dtype=np.int64),
        "positions": np.zeros(0, dtype=_index_dtype(max_length)),
        "columns": np.zeros(0, dtype=_index_dtype(num_features)),
        "values": np.zeros(0, dtype=np.float32),
    }


def sparse_part(token_acts: torch.Tensor, lengths: torch.Tensor, max_length: int) -> dict[str, np.ndarray]:
    """One batch's nonzero per-token values, on the CPU (only the nonzero ones leave the device).

    Args:
        token_acts: (batch, tokens, F), zero at ignored positions.
        lengths: (batch,) tokens of each sample.
        max_length: the engine's largest token count (sizes the position type).
    """
    index = torch.nonzero(token_acts)
    values = token_acts[index[:, 0], index[:, 1], index[:, 2]].float().cpu().numpy()
    index = index.cpu().numpy()
    return {
        "lengths": lengths.cpu().numpy().astype(np.int32),
        "counts": np.bincount(index[:, 0], minlength=token_acts.shape[0]).astype(np.int64),
        "positions": index[:, 1].astype(_index_dtype(max_length)),
        "columns": index[:, 2].astype(_index_dtype(token_acts.shape[2])),
        "values": values,
    }


def join_parts(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Consecutive rows' parts (batches, processes' shares) as one."""
    return {name: np.concatenate([part[name] for part in parts]) for name in PART_ARRAYS}


class KeptTokens:
    """The kept per-token values of one activation cache entry, read shard by shard (the last one read stays in memory).

    Args:
        store: the activation cache entry.
        entries: its manifest entries of the per-token files, one per shard, in shard order.
        shard_size: corpus rows per shard.
        num_features: F.
    """

    def __init__(self, store: ArrayStore, entries: list[dict[str, str]], shard_size: int, num_features: int) -> None:
        self.store = store
        self.entries = entries
        self.shard_size = shard_size
        self.num_features = num_features
        self._loaded: tuple[int, dict[str, np.ndarray]] | None = None

    def read(self, rows: Sequence[int]) -> torch.Tensor:
        """(len(rows), T, F) float32 per-token values of these corpus rows, T their largest token count, zero past
        a sample's end (as the engine's right-padded batch). Rows in ascending order read each shard once."""
        kept: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        for row in rows:
            shard = self._shard(int(row) // self.shard_size)
            local = int(row) % self.shard_size
            start, end = shard["offsets"][local], shard["offsets"][local + 1]
            positions, columns, values = (shard[name][start:end] for name in PART_ARRAYS[2:])
            kept.append((int(shard["lengths"][local]), positions, columns, values))
        token_acts = torch.zeros(len(kept), max((length for length, *_ in kept), default=0), self.num_features)
        for i, (_, positions, columns, values) in enumerate(kept):
            token_acts[i, torch.from_numpy(positions.astype(np.int64)), torch.from_numpy(columns.astype(np.int64))] = (
                torch.from_numpy(values)
            )
        return token_acts

    def _shard(self, index: int) -> dict[str, np.ndarray]:
        if self._loaded is None or self._loaded[0] != index:
            try:
                arrays = self.store.read_arrays(self.entries[index])
            except CacheCorrupt as error:
                raise CacheError(
                    f"the per-token activations in {self.store.folder} are damaged or gone since the pass wrote them "
                    f"({error}); delete that folder and run again to rebuild the activation cache"
                ) from error
            arrays["offsets"] = np.concatenate([[0], np.cumsum(arrays["counts"])])
            self._loaded = (index, arrays)
        return self._loaded[1]


def kept_values(activation_set: ActivationSet) -> PerTokenValues:
    """The set's per-token values; a CacheError for a set that keeps none (made by hand, not by the engine)."""
    if activation_set.token_values is None:
        raise CacheError(
            "this ActivationSet keeps no per-token activations, so no pools, delphi windows or SAEBench examples "
            "can be derived from it; make it with harness.activations.extract_activations"
        )
    return activation_set.token_values
