"""A plugin site kind's settings: `site.settings`, checked at load by its `settings_model`, in the site's
identity only when given, and read by the site it builds (issue #29: plugin settings for every registry)."""

from __future__ import annotations

import pytest
import torch

from harness.config import StrictModel, parse_config
from harness.errors import ConfigError
from harness.registry import SITES
from harness.sites import build_site
from harness.sites._neuron import NeuronSite


class ScaleSettings(StrictModel):
    scale: float = 1.0


class ScaledNeuronSite(NeuronSite):
    """The neurons of a module, multiplied by a configured factor."""

    settings_model = ScaleSettings

    @classmethod
    def from_config(cls, config, loaded_model, corpus=None):
        site = cls(loaded_model, config.module, config.hook, config.features)
        site.scale = cls.given_settings(config).scale
        return site

    @property
    def identity(self) -> str:
        return f"{super().identity}:scale={self.scale}"

    def encode(self, captured, features):
        return super().encode(captured, features) * self.scale


@pytest.fixture
def scaled_site(monkeypatch):
    monkeypatch.setattr(SITES, "_targets", dict(SITES._targets))
    monkeypatch.setattr(SITES, "_names_by_target", dict(SITES._names_by_target))
    SITES.add("scaled", f"{__name__}:ScaledNeuronSite")


def site_config(**site):
    return parse_config({"site": {"module": "model.layers.3.mlp.act_fn", "features": [1, 2], **site}})


def test_site_settings_are_checked_at_load_with_their_key_path(scaled_site):
    assert site_config(kind="scaled", settings={"scale": 2.0}).site.settings == {"scale": 2.0}
    with pytest.raises(ConfigError, match=r"site.settings.scales: unknown key"):
        site_config(kind="scaled", settings={"scales": 2.0})
    with pytest.raises(ConfigError, match=r"site.settings: .*NeuronSite declares no settings_model"):
        site_config(kind="neuron", settings={"scale": 2.0})


def test_site_settings_enter_the_identity_only_when_given(scaled_site):
    plain = site_config(kind="scaled")
    assert plain.site.fingerprint() == site_config(kind="scaled", settings={}).site.fingerprint()
    assert plain.site.fingerprint() != site_config(kind="scaled", settings={"scale": 2.0}).site.fingerprint()
    assert "settings" not in plain.model_dump(mode="json", exclude_defaults=True)["site"]


@pytest.mark.slow
def test_the_built_site_reads_its_settings(scaled_site, subject_model):
    neuron = build_site(site_config().site, subject_model)
    scaled = build_site(site_config(kind="scaled", settings={"scale": 3.0}).site, subject_model)
    captured = torch.randn(2, 5, neuron.width)
    features = torch.tensor([1, 2])
    torch.testing.assert_close(scaled.encode(captured, features), 3.0 * neuron.encode(captured, features))
    assert scaled.identity != neuron.identity and scaled.identity.endswith("scale=3.0")
