"""Site kinds by name: a new kind is one small file that registers a builder here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.config import SiteConfig
from harness.registry import Registry
from harness.sites._base import FeatureSite

SITES: Registry[Callable[[SiteConfig, Any], FeatureSite]] = Registry("site kind")


def build_site(config: SiteConfig, loaded_model: Any) -> FeatureSite:
    """The feature site described by `config`, checked against the loaded subject model.

    Args:
        config: site kind, module path, hook side and (for 'sae') the SAE files.
        loaded_model: a harness LoadedModel (or a bare torch model).
    """
    site = SITES.get(config.kind)(config, loaded_model)
    site.resolve_features(site.selection)  # out-of-range features fail here, before any work
    return site
