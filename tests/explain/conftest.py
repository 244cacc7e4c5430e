"""Hand-made feature records: known tokens and activations, so every expected prompt is known; the subject model
and an SAE latent planted on it for the output-centric explainers."""

from __future__ import annotations

import numpy as np
import pytest

from harness.activations.types import ActivatingExample
from harness.config import SubjectModelConfig
from harness.explain import FeatureRecord
from harness.model import load_subject_model
from tests.sites.conftest import _random_sae_weights, _write_saelens

PLANTED_LAYER = 20


def example(sample_id: int, tokens: list[str], activations: list[float]) -> ActivatingExample:
    values = np.asarray(activations, dtype=np.float32)
    position = int(np.argmax(np.abs(values)))
    return ActivatingExample(
        sample_id=sample_id,
        text="".join(tokens),
        tokens=tokens,
        activations=values,
        max_activation=float(values[position]),
        max_position=position,
    )


def planted_record(feature: int, planted: str, num_top: int = 12, num_pool: int = 30, seed: int = 0) -> FeatureRecord:
    """A feature that fires on the token `planted` only: top examples contain it (at varying strength),
    pool examples span weak activations down to zero and never contain it."""
    rng = np.random.default_rng([seed, feature])
    filler = ["the", " cat", " sat", " on", " a", " mat", " while", " it", " rained", "."]
    top, pool = [], []
    for index in range(num_top):
        tokens = [filler[(index + k) % len(filler)] for k in range(8)]
        position = int(rng.integers(1, 7))
        tokens[position] = f" {planted}"
        activations = np.zeros(8)
        activations[position] = 10.0 - 0.5 * index
        top.append(example(1000 * feature + index, tokens, list(activations)))
    for index in range(num_pool):
        tokens = [filler[(index + 3 * k) % len(filler)] for k in range(8)]
        activations = np.zeros(8)
        activations[int(rng.integers(0, 8))] = max(0.0, 2.0 - 0.1 * index)
        pool.append(example(1000 * feature + 500 + index, tokens, list(activations)))
    top.sort(key=lambda item: -item.max_activation)
    return FeatureRecord(feature=feature, top_examples=tuple(top), pool=tuple(pool))


@pytest.fixture
def make_example():
    return example


@pytest.fixture
def make_planted_record():
    return planted_record


@pytest.fixture(scope="session")
def subject_model():
    return load_subject_model(SubjectModelConfig())


@pytest.fixture(scope="session")
def planted_sae(subject_model, tmp_path_factory):
    """(folder, module path, token id): an SAE in SAELens' files on a residual stream whose latent 0 writes
    a discriminator direction of " banana" (its unembedding row minus the mean row) and never fires by itself;
    latents 1-3 are random."""
    unembedding = subject_model.model.get_output_embeddings().weight.detach().float().numpy()
    banana = subject_model.tokenizer.encode(" banana")[0]
    weights = _random_sae_weights(unembedding.shape[1], 4, seed=1)
    weights["W_dec"][0] = unembedding[banana] - unembedding.mean(axis=0)
    weights["W_enc"][:, 0] = 0.0
    weights["b_enc"][0] = -1.0
    folder = _write_saelens(tmp_path_factory.mktemp("planted") / "sae", weights)
    return folder, f"model.layers.{PLANTED_LAYER}", banana
