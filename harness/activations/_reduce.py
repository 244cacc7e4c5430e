"""Pure numeric steps of the engine: which tokens count, FADE's per-sample value, streaming top-k."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


def valid_token_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: list[int],
    skip_special_tokens: bool,
    skip_first_positions: int,
) -> torch.Tensor:
    """(batch, tokens) bool: the positions whose activations count (never padding)."""
    valid = attention_mask != 0
    if skip_special_tokens and special_ids:
        valid &= ~torch.isin(input_ids, torch.tensor(special_ids, device=input_ids.device))
    if skip_first_positions:
        valid[:, :skip_first_positions] = False
    return valid


def max_abs_per_sample(token_acts: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FADE's per-sample activation: the signed value at the valid token of largest |activation|.

    Args:
        token_acts: (batch, tokens, features), already zero at invalid positions.
        valid: (batch, tokens) bool.

    Returns:
        values (batch, features) and their positions (batch, features); a sample without valid
        tokens gets 0.0 (first ties win).
    """
    score = token_acts.abs().masked_fill(~valid.unsqueeze(-1), -1.0)
    positions = score.argmax(dim=1)
    values = token_acts.gather(1, positions.unsqueeze(1)).squeeze(1)
    return values, positions


@dataclass
class TopExamples:
    """Per feature, the k best samples so far by signed per-sample activation (descending; ties by row).

    Empty slots have row -1 and value -inf. The order is total, so merging partial results in any
    grouping (batches, shards, processes) gives the same final top-k. Merges update the arrays in place.
    """

    values: np.ndarray  # float32 (F, k)
    rows: np.ndarray  # int64 (F, k): row of the sample in the corpus table
    positions: np.ndarray  # int64 (F, k): token of largest |activation|
    token_acts: np.ndarray  # float32 (F, k, T): per-token activations, zero-padded to T

    @classmethod
    def empty(cls, num_features: int, k: int, max_tokens: int) -> TopExamples:
        return cls(
            values=np.full((num_features, k), -np.inf, dtype=np.float32),
            rows=np.full((num_features, k), -1, dtype=np.int64),
            positions=np.zeros((num_features, k), dtype=np.int64),
            token_acts=np.zeros((num_features, k, max_tokens), dtype=np.float32),
        )

    def merge(
        self,
        values: np.ndarray,
        rows: np.ndarray,
        positions: np.ndarray,
        fetch_token_acts: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> None:
        """Keep the top-k of these and M new candidates (in place); per-token values are fetched
        only for candidates that get in, and only features whose top-k changed are rewritten.

        Args:
            values, rows, positions: (F, M) candidates.
            fetch_token_acts: (feature indices, candidate indices) -> (n, tokens) per-token values.
        """
        k = self.values.shape[1]
        all_values = np.concatenate([self.values, values], axis=1)
        all_rows = np.concatenate([self.rows, rows], axis=1)
        best = np.lexsort((all_rows, -all_values), axis=-1)[:, :k]
        changed = np.flatnonzero((best >= k).any(axis=1))
        if changed.size == 0:
            return
        best = best[changed]
        self.values[changed] = np.take_along_axis(all_values[changed], best, axis=1)
        self.rows[changed] = np.take_along_axis(all_rows[changed], best, axis=1)
        all_positions = np.concatenate([self.positions[changed], positions[changed]], axis=1)
        self.positions[changed] = np.take_along_axis(all_positions, best, axis=1)
        token_acts = np.zeros((changed.size, k, self.token_acts.shape[2]), dtype=np.float32)
        kept_f, kept_slot = np.nonzero(best < k)
        token_acts[kept_f, kept_slot] = self.token_acts[changed[kept_f], best[kept_f, kept_slot]]
        new_f, new_slot = np.nonzero(best >= k)
        fetched = fetch_token_acts(changed[new_f], best[new_f, new_slot] - k)
        token_acts[new_f, new_slot, : fetched.shape[1]] = fetched
        self.token_acts[changed] = token_acts

    def merge_top(self, other: TopExamples) -> None:
        """Keep the top-k of this and another partial result (in place)."""
        self.merge(other.values, other.rows, other.positions, lambda f, j: other.token_acts[f, j])

    def merge_batch(
        self, values: torch.Tensor, positions: torch.Tensor, token_acts: torch.Tensor, rows: np.ndarray
    ) -> None:
        """Stream one batch in (in place); only the winners' per-token values leave the device.

        Args:
            values, positions: (batch, F) from max_abs_per_sample.
            token_acts: (batch, tokens, F).
            rows: (batch,) corpus rows of the batch.
        """
        num_features = values.shape[1]
        batch_values = values.T.cpu().numpy().astype(np.float32)
        batch_rows = np.broadcast_to(rows.astype(np.int64), (num_features, rows.size))
        batch_positions = positions.T.cpu().numpy().astype(np.int64)

        def fetch(feature_index: np.ndarray, batch_index: np.ndarray) -> np.ndarray:
            f = torch.from_numpy(feature_index).to(token_acts.device)
            b = torch.from_numpy(batch_index).to(token_acts.device)
            return token_acts[b, :, f].cpu().numpy()

        self.merge(batch_values, batch_rows, batch_positions, fetch)
