"""Hand-made feature records: known tokens and activations, so every expected prompt is known."""

from __future__ import annotations

import numpy as np
import pytest

from harness.activations.types import ActivatingExample
from harness.explain import FeatureRecord


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
