"""The random-model control: the subject model with every weight re-initialised, seeded (docs/controls.md)."""

import pytest
import torch

from harness.config import SubjectModelConfig
from harness.model import load_subject_model
from harness.model._loader import _reinitialised

pytestmark = pytest.mark.slow


def test_the_random_model_has_the_trained_ones_shapes_and_tokenizer_and_fresh_seeded_weights():
    trained = load_subject_model(SubjectModelConfig())
    random = load_subject_model(SubjectModelConfig(weights="random"))
    assert random.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    assert trained.name != random.name and "random weights, seed 0" in random.name  # apart in every cache key
    trained_weights, random_weights = dict(trained.model.named_parameters()), dict(random.model.named_parameters())
    assert {name: w.shape for name, w in trained_weights.items()} == {n: w.shape for n, w in random_weights.items()}
    down = "model.layers.15.mlp.down_proj.weight"
    assert not torch.equal(trained_weights[down], random_weights[down])
    # transformers' own initialisation: normal(0, initializer_range), norms 1
    assert random_weights[down].std().item() == pytest.approx(random.model.config.initializer_range, rel=0.02)
    assert torch.equal(random_weights["model.norm.weight"], torch.ones_like(random_weights["model.norm.weight"]))
    # seeded, and the caller's random stream is left as it was
    state = torch.random.get_rng_state()
    again = _reinitialised(trained.model, SubjectModelConfig(weights="random"))
    other = _reinitialised(trained.model, SubjectModelConfig(weights="random", random_seed=1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(dict(again.named_parameters())[down], random_weights[down])
    assert not torch.equal(dict(other.named_parameters())[down], random_weights[down])
