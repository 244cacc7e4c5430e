"""SAE files in both layouts, and the three encoders against numpy formulas."""

import json

import numpy as np
import pytest
import torch

from harness.config import SAEConfig
from harness.errors import SiteError
from harness.sites import load_sae

D_IN, D_SAE = 12, 40


def numpy_pre(weights, x, subtract_b_dec=False):
    x = x - weights["b_dec"] if subtract_b_dec else x
    return x @ weights["W_enc"] + weights["b_enc"]


def numpy_relu(weights, x, subtract_b_dec=False):
    return np.maximum(numpy_pre(weights, x, subtract_b_dec), 0)


def numpy_jumprelu(weights, x):
    pre = numpy_pre(weights, x)
    return np.where(pre > weights["threshold"], pre, 0.0) * (pre > 0)


def numpy_topk(weights, x, k):
    pre = numpy_pre(weights, x)
    out = np.zeros_like(pre)
    for row in range(pre.shape[0]):
        best = np.argsort(-pre[row])[:k]
        out[row, best] = np.maximum(pre[row, best], 0)
    return out


@pytest.fixture
def inputs():
    return np.random.default_rng(1).normal(size=(7, D_IN)).astype(np.float32)


def encode(sae, x, features=None):
    selected = None if features is None else torch.tensor(features)
    return sae.encode(torch.from_numpy(x), selected).numpy()


def test_saelens_relu_matches_formula(tmp_path, inputs, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE)
    sae = load_sae(
        SAEConfig(path=str(write_saelens(tmp_path / "sae", weights, architecture="standard", activation_fn="relu")))
    )
    assert (sae.activation, sae.d_in, sae.d_sae) == ("relu", D_IN, D_SAE)
    np.testing.assert_allclose(encode(sae, inputs), numpy_relu(weights, inputs), rtol=1e-5, atol=1e-6)
    features = [31, 2, 17]
    np.testing.assert_allclose(
        encode(sae, inputs, features), numpy_relu(weights, inputs)[:, features], rtol=1e-5, atol=1e-6
    )


def test_saelens_apply_b_dec_to_input(tmp_path, inputs, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE)
    sae = load_sae(
        SAEConfig(path=str(write_saelens(tmp_path / "sae", weights, activation_fn="relu", apply_b_dec_to_input=True)))
    )
    np.testing.assert_allclose(
        encode(sae, inputs), numpy_relu(weights, inputs, subtract_b_dec=True), rtol=1e-5, atol=1e-6
    )


def test_saelens_jumprelu_matches_formula(tmp_path, inputs, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE, threshold=True)
    sae = load_sae(SAEConfig(path=str(write_saelens(tmp_path / "sae", weights, architecture="jumprelu"))))
    expected = numpy_jumprelu(weights, inputs)
    assert 0 < np.count_nonzero(expected) < expected.size  # the threshold actually cuts
    np.testing.assert_allclose(encode(sae, inputs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(sae, inputs, [5, 0]), expected[:, [5, 0]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "k_in_cfg", [{"architecture": "topk", "k": 5}, {"activation_fn": "topk", "activation_fn_kwargs": {"k": 5}}]
)
def test_saelens_topk_matches_formula(tmp_path, inputs, k_in_cfg, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE)
    sae = load_sae(SAEConfig(path=str(write_saelens(tmp_path / "sae", weights, **k_in_cfg))))
    assert (sae.activation, sae.k) == ("topk", 5)
    expected = numpy_topk(weights, inputs, 5)
    np.testing.assert_allclose(encode(sae, inputs), expected, rtol=1e-5, atol=1e-6)
    # selected latents of a TopK SAE still compete with all the others
    np.testing.assert_allclose(encode(sae, inputs, [3, 9]), expected[:, [3, 9]], rtol=1e-5, atol=1e-6)


def test_config_overrides_activation_and_k(tmp_path, inputs, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE)
    folder = write_saelens(tmp_path / "sae", weights, activation_fn="relu")
    sae = load_sae(SAEConfig(path=str(folder), activation="topk", k=3))
    np.testing.assert_allclose(encode(sae, inputs), numpy_topk(weights, inputs, 3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("as_folder", [False, True])
def test_gemmascope_npz_is_jumprelu(tmp_path, inputs, as_folder, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE, threshold=True)
    np.savez(tmp_path / "params.npz", **weights)
    sae = load_sae(SAEConfig(path=str(tmp_path if as_folder else tmp_path / "params.npz")))
    assert sae.activation == "jumprelu" and not sae.apply_b_dec_to_input
    np.testing.assert_allclose(encode(sae, inputs), numpy_jumprelu(weights, inputs), rtol=1e-5, atol=1e-6)


def test_content_hash_follows_the_weights(tmp_path, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE)
    first = load_sae(SAEConfig(path=str(write_saelens(tmp_path / "a", weights, activation_fn="relu"))))
    same = load_sae(SAEConfig(path=str(write_saelens(tmp_path / "b", weights, activation_fn="relu"))))
    weights["b_enc"][0] += 1
    changed = load_sae(SAEConfig(path=str(write_saelens(tmp_path / "c", weights, activation_fn="relu"))))
    assert first.content_hash == same.content_hash != changed.content_hash


def test_inconsistent_shapes_are_a_clear_error(tmp_path, write_saelens, random_sae_weights):
    weights = random_sae_weights(D_IN, D_SAE)
    weights["W_dec"] = weights["W_dec"][:, :-1]
    with pytest.raises(SiteError, match=r"W_dec \(40, 11\) \(expected \(40, 12\)\)"):
        load_sae(SAEConfig(path=str(write_saelens(tmp_path / "sae", weights, activation_fn="relu"))))


def test_nan_weights_are_a_clear_error_at_load(tmp_path, write_saelens, random_sae_weights):
    """Not an SAE whose every activation is NaN, blamed on the subject model later (issue #30)."""
    weights = random_sae_weights(D_IN, D_SAE)
    weights["W_enc"][3, 5] = np.nan
    with pytest.raises(SiteError, match=r"the weights \['W_enc'\] hold NaN or infinite values"):
        load_sae(SAEConfig(path=str(write_saelens(tmp_path / "sae", weights, activation_fn="relu"))))


def test_config_dimensions_must_match_weights(tmp_path, write_saelens, random_sae_weights):
    folder = write_saelens(tmp_path / "sae", random_sae_weights(D_IN, D_SAE), activation_fn="relu")
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 64}))
    with pytest.raises(SiteError, match="d_sae=64"):
        load_sae(SAEConfig(path=str(folder)))


def test_jumprelu_without_threshold_is_a_clear_error(tmp_path, write_saelens, random_sae_weights):
    folder = write_saelens(tmp_path / "sae", random_sae_weights(D_IN, D_SAE), architecture="jumprelu")
    with pytest.raises(SiteError, match=r"lacks the weights \['threshold'\]"):
        load_sae(SAEConfig(path=str(folder)))


def test_topk_without_k_is_a_clear_error(tmp_path, write_saelens, random_sae_weights):
    folder = write_saelens(tmp_path / "sae", random_sae_weights(D_IN, D_SAE), architecture="topk")
    with pytest.raises(SiteError, match="no k"):
        load_sae(SAEConfig(path=str(folder)))


def test_unsupported_architecture_is_a_clear_error(tmp_path, write_saelens, random_sae_weights):
    folder = write_saelens(tmp_path / "sae", random_sae_weights(D_IN, D_SAE), architecture="gated")
    with pytest.raises(SiteError, match="'gated' is not supported"):
        load_sae(SAEConfig(path=str(folder)))


def test_missing_sae_is_a_clear_error(tmp_path):
    with pytest.raises(SiteError, match="does not exist"):
        load_sae(SAEConfig(path=str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiteError, match=r"cfg.json \+ sae_weights.safetensors"):
        load_sae(SAEConfig(path=str(tmp_path / "empty")))
