"""SAE sites: the latents of a sparse autoencoder applied to a module's tensor are the features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from harness.config import SiteConfig
from harness.errors import SiteError
from harness.files import identity_hash
from harness.sites._base import CalibrationCorpus, FeatureSite, FeatureSpec
from harness.sites._sae_files import SparseAutoencoder, load_sae
from harness.sites._sae_random import random_sae


class SAESite(FeatureSite):
    """Feature = SAE latent. Steering sets a latent and writes the decoded change back into the module
    tensor, keeping the SAE's reconstruction error, so a pass that changes nothing changes nothing."""

    steering_uses_reference = True

    @classmethod
    def from_config(cls, config: SiteConfig, loaded_model: Any, corpus: CalibrationCorpus | None = None) -> SAESite:
        if config.sae is None:
            raise SiteError("site kind 'sae' needs an 'sae:' section with the SAE's path")
        trained = cls(loaded_model, config.module, config.hook, load_sae(config.sae), config.features)
        if config.sae.weights == "trained":
            return trained
        if corpus is None:
            raise SiteError(
                f"site.sae.weights: random (the SAE at {config.sae.path}) is calibrated on the run's corpus, but "
                "the site was built without it; build it with build_site(config.site, model, "
                "calibration_corpus(model, corpus, config.activations)) or through harness.stages.SharedStages"
            )
        calibration = identity_hash({"corpus": corpus.identity, "module": config.module, "hook": config.hook})
        random = random_sae(trained.sae, corpus.inputs(trained), config.sae.random_seed, calibration)
        return cls(loaded_model, config.module, config.hook, random, config.features)

    def __init__(
        self, model: Any, module_path: str, hook: str, sae: SparseAutoencoder, selection: FeatureSpec = "all"
    ) -> None:
        super().__init__(model, module_path, hook, selection)
        if sae.d_in != self.width:
            trained_at = f" (its config says it was trained on {sae.hook_name!r})" if sae.hook_name else ""
            raise SiteError(
                f"SAE at {sae.source} has d_in={sae.d_in}, but the {hook} of {module_path} has {self.width} "
                f"channels{trained_at}; attach the SAE to the module it was trained on"
            )
        self.sae = sae

    @property
    def num_features(self) -> int:
        return self.sae.d_sae

    @property
    def identity(self) -> str:
        return f"{super().identity}:{self.sae.identity}"

    def feature_vectors(self, features: Sequence[int]) -> torch.Tensor:
        return self.sae.W_dec[list(features)].detach().float().cpu()

    def encode(self, captured: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self._sae_on(captured.device).encode(captured.float(), features)

    def steered(self, captured: torch.Tensor, feature: int, factor: float, reference: float | None) -> torch.Tensor:
        """Set the latent to factor x reference (FADE), or scale it by factor when reference is None."""
        sae = self._sae_on(captured.device)
        current = sae.encode(captured.float(), torch.tensor([feature], device=captured.device))
        target = factor * (current if reference is None else torch.full_like(current, float(reference)))
        change = (target - current) * sae.W_dec[feature]  # zero exactly where the latent keeps its value
        return captured + change.to(captured.dtype)

    def clamped(self, captured: torch.Tensor, feature: int, value: float) -> torch.Tensor:
        return self.steered(captured, feature, 1.0, value)

    def steering_is_identity(self, factor: float, reference: float | None) -> bool:
        return reference is None and factor == 1.0  # the change is then exactly zero

    def _sae_on(self, device: torch.device) -> SparseAutoencoder:
        self.sae = self.sae.to(device)
        return self.sae
