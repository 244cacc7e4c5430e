"""Building the site a config names (the site kinds are declared in harness.registry.SITES)."""

from __future__ import annotations

from typing import Any

from harness.config import SiteConfig
from harness.registry import SITES
from harness.sites._base import CalibrationCorpus, FeatureSite


def build_site(config: SiteConfig, loaded_model: Any, corpus: CalibrationCorpus | None = None) -> FeatureSite:
    """The feature site described by `config`, checked against the loaded subject model.

    Args:
        config: site kind, module path, hook side and (for 'sae') the SAE files.
        loaded_model: a harness LoadedModel (or a bare torch model).
        corpus: the run's corpus as the site reads it (harness.activations.calibration_corpus); needed by
            a random SAE (site.sae.weights: random), which is calibrated on it.
    """
    site = SITES.get(config.kind).from_config(config, loaded_model, corpus)
    site.resolve_features(site.selection)  # out-of-range features fail here, before any work
    return site
