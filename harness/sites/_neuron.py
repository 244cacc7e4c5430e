"""Neuron sites: each channel of a module's output (e.g. `mlp.act_fn`) or input (e.g. `mlp.down_proj`,
the gated MLP neuron of Llama-style models) is a feature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.config import SiteConfig
from harness.sites._base import CalibrationCorpus, FeatureSite


class NeuronSite(FeatureSite):
    """Feature = channel index of the module tensor; steering multiplies the channel (FADE)."""

    steering_uses_reference = False

    @classmethod
    def from_config(cls, config: SiteConfig, loaded_model: Any, corpus: CalibrationCorpus | None = None) -> NeuronSite:
        return cls(loaded_model, config.module, config.hook, config.features)

    @property
    def num_features(self) -> int:
        return self.width

    def feature_vectors(self, features: Sequence[int]) -> torch.Tensor:
        return torch.eye(self.width)[list(features)]

    def encode(self, captured: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return captured.index_select(-1, features).float()

    def steered(self, captured: torch.Tensor, feature: int, factor: float, reference: float | None) -> torch.Tensor:
        # `reference` is not used: FADE multiplies a neuron's own activation.
        changed = captured.clone()
        changed[..., feature] *= factor
        return changed

    def clamped(self, captured: torch.Tensor, feature: int, value: float) -> torch.Tensor:
        changed = captured.clone()
        changed[..., feature] = value
        return changed

    def steering_is_identity(self, factor: float, reference: float | None) -> bool:
        return factor == 1.0  # x * 1.0 is x exactly
