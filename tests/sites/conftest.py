import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from harness.config import SubjectModelConfig
from harness.model import load_subject_model


@pytest.fixture(scope="session")
def subject_model():
    return load_subject_model(SubjectModelConfig())


def _write_saelens(folder, weights: dict[str, np.ndarray], **cfg):
    """An SAE folder in SAELens' layout: cfg.json + sae_weights.safetensors."""
    folder.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = weights["W_enc"].shape
    (folder / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": d_sae, **cfg}), encoding="utf-8")
    save_file({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()},
              str(folder / "sae_weights.safetensors"))  # fmt: skip
    return folder


def _random_sae_weights(d_in: int, d_sae: int, seed: int = 0, threshold: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {
        "W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32) / np.sqrt(d_in),
        "b_enc": rng.normal(size=d_sae).astype(np.float32) * 0.1,
        "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32) / np.sqrt(d_sae),
        "b_dec": rng.normal(size=d_in).astype(np.float32) * 0.1,
    }
    if threshold:
        weights["threshold"] = rng.uniform(0.0, 0.3, size=d_sae).astype(np.float32)
    return weights


@pytest.fixture(scope="session")
def write_saelens():
    """write_saelens(folder, weights, **cfg): an SAE folder in SAELens' layout."""
    return _write_saelens


@pytest.fixture(scope="session")
def random_sae_weights():
    """random_sae_weights(d_in, d_sae, seed=0, threshold=False): SAE weights as numpy arrays."""
    return _random_sae_weights
