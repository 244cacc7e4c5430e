"""Building the site a config names (the site kinds are declared in harness.registry.SITES)."""

from __future__ import annotations

from typing import Any

from harness.config import SiteConfig
from harness.registry import SITES
from harness.sites._base import FeatureSite


def build_site(config: SiteConfig, loaded_model: Any) -> FeatureSite:
    """The feature site described by `config`, checked against the loaded subject model.

    Args:
        config: site kind, module path, hook side and (for 'sae') the SAE files.
        loaded_model: a harness LoadedModel (or a bare torch model).
    """
    site = SITES.get(config.kind).from_config(config, loaded_model)
    site.resolve_features(site.selection)  # out-of-range features fail here, before any work
    return site
