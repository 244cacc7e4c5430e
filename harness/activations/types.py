"""What the activation engine hands to the later stages (explainers, FADE, scorers)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ActivatingExample:
    """One corpus sample as an explainer sees it: its tokens and the feature's value at each token.

    Positions that the engine ignores (padding; special tokens or the first N positions when the config
    says so) have activation 0.0 and are listed in `ignored_positions`.
    """

    sample_id: int
    text: str
    tokens: list[str]
    activations: np.ndarray  # float32, one value per token
    max_activation: float  # signed value at the token of largest |activation| (FADE's per-sample activation)
    max_position: int
    ignored_positions: tuple[int, ...] = ()


class PerTokenValues(Protocol):
    """Per-token activations of corpus rows as the engine computed them (harness.activations._tokens.KeptTokens)."""

    def read(self, rows: Sequence[int]) -> torch.Tensor:
        """(len(rows), T, F) float32, T the rows' largest token count, zero at ignored positions and past the end."""
        ...


@dataclass
class ActivationSet:
    """Per-sample activations of every selected feature of one site over one corpus.

    `per_sample[i, j]` is FADE's per-sample activation of feature `feature_ids[j]` on sample
    `sample_ids[i]`: the signed value at the token with the largest absolute value.
    `top_examples[feature]` holds the top-k samples by that value (descending), with per-token values.
    `token_values` reads every sample's per-token values as the pass kept them (None for a set made by hand).
    """

    feature_ids: np.ndarray  # int64 (F,)
    sample_ids: np.ndarray  # int64 (N,)
    per_sample: np.ndarray  # float32 (N, F)
    top_examples: dict[int, list[ActivatingExample]] = field(default_factory=dict)
    cache_key: str = ""
    token_values: PerTokenValues | None = None

    def column(self, feature: int) -> np.ndarray:
        """Per-sample activations of one feature, aligned with `sample_ids`."""
        matches = np.flatnonzero(self.feature_ids == feature)
        if matches.size == 0:
            raise KeyError(f"feature {feature} was not extracted (have {self.feature_ids.size} features)")
        return self.per_sample[:, matches[0]]

    def max_abs(self, feature: int) -> float:
        """Largest |activation| of a feature on the corpus (FADE's SAE steering scale)."""
        return float(np.max(np.abs(self.column(feature)))) if self.sample_ids.size else 0.0


@dataclass(frozen=True)
class WindowSample:
    """One feature's examples as eai-delphi 0.1.3 draws them for its detection and fuzzing test set.

    The corpus is cut into windows of a fixed number of tokens; `test` holds windows drawn from equal rank
    slices of every window where the feature is active (nonzero), `test_slices` each one's slice (0 = the
    highest-ranked, delphi's `quantile`), and `not_active` random windows where it is zero everywhere (their
    activations are zeros, as delphi writes them). `test` is empty when fewer than the minimum are active.
    """

    num_windows: int
    num_active: int
    test: tuple[ActivatingExample, ...] = ()
    test_slices: tuple[int, ...] = ()
    not_active: tuple[ActivatingExample, ...] = ()


@dataclass(frozen=True)
class SAEBenchSample:
    """One feature's examples as sae-bench 0.6.0's autointerp draws them (sae_bench/evals/autointerp/main.py:394-513).

    Every example is a window of 2 x buffer + 1 tokens around one token. `generation`: the explainer's
    examples (top ones and activation-weighted ones), by descending largest value; `scoring`: the judge's
    examples in the shuffled order it sees them, with `active` (any value above the feature's threshold).
    """

    generation: tuple[ActivatingExample, ...]
    scoring: tuple[ActivatingExample, ...]
    active: tuple[bool, ...]
