"""Feature sites: where features live (a module's channels, or SAE latents on a module) — read and steer.

Kinds are registered by name in SITES ('neuron', 'sae'; declared in harness.registry).
"""

from harness.sites._base import FeatureSite, FeatureSpec, input_device, resolve_module, torch_model
from harness.sites._neuron import NeuronSite
from harness.sites._registry import SITES, build_site
from harness.sites._sae import SAESite
from harness.sites._sae_files import SAE_ACTIVATIONS, SAEActivation, SparseAutoencoder, load_sae

__all__ = [
    "SAE_ACTIVATIONS",
    "SITES",
    "FeatureSite",
    "FeatureSpec",
    "NeuronSite",
    "SAEActivation",
    "SAESite",
    "SparseAutoencoder",
    "build_site",
    "input_device",
    "load_sae",
    "resolve_module",
    "torch_model",
]
