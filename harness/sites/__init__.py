"""Feature sites: where features live (a module's channels, or SAE latents on a module) — read and steer.

Kinds are registered by name in SITES ('neuron', 'sae'; declared in harness.registry). An 'sae' site with
`weights: random` is the randomized control, calibrated on the run's corpus (docs/random-sae.md).
"""

from harness.sites._base import CalibrationCorpus, FeatureSite, FeatureSpec, input_device, resolve_module, torch_model
from harness.sites._neuron import NeuronSite
from harness.sites._output import final_norm, vocab_projection
from harness.sites._registry import SITES, build_site
from harness.sites._sae import SAESite
from harness.sites._sae_files import SAE_ACTIVATIONS, SAEActivation, SparseAutoencoder, load_sae
from harness.sites._sae_random import RandomSAEWarning, firing_counts, random_sae

__all__ = [
    "SAE_ACTIVATIONS",
    "SITES",
    "CalibrationCorpus",
    "FeatureSite",
    "FeatureSpec",
    "NeuronSite",
    "RandomSAEWarning",
    "SAEActivation",
    "SAESite",
    "SparseAutoencoder",
    "build_site",
    "final_norm",
    "firing_counts",
    "input_device",
    "load_sae",
    "random_sae",
    "resolve_module",
    "torch_model",
    "vocab_projection",
]
