"""The per-token values the activation pass keeps: stored exactly (zeros dropped), read back per row across
shards, and what derives from them (pools, delphi's windows, SAEBench's examples) equal to what a forward pass
over the same rows in the same batches gives, the way those were made before the pass kept the values."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from configs import SMALL_CONVENTIONS
from harness.activations import ActivationSet, delphi_windows, extract_activations, pool_examples, saebench_examples
from harness.activations._forward import forward_batch
from harness.activations._store import ArrayStore
from harness.activations._tokens import KeptTokens, join_parts, sparse_part
from harness.config import parse_config
from harness.errors import CacheError
from harness.sites import build_site


def _kept(tmp_path, shards: list[tuple[torch.Tensor, torch.Tensor]], num_features: int) -> KeptTokens:
    store = ArrayStore(tmp_path / "entry", "k" * 64)
    entries = [
        store.write_arrays(f"tokens-{index:05d}.npz", sparse_part(acts, lengths, max_length=8))
        for index, (acts, lengths) in enumerate(shards)
    ]
    return KeptTokens(store, entries, shard_size=2, num_features=num_features)


def test_kept_values_read_back_exactly_across_shards(tmp_path):
    first = torch.tensor(
        [[[0.0, 1.5], [-2.0, 0.0], [0.0, 0.0]], [[1e-30, 0.0], [0.0, 0.0], [0.0, 0.0]]]
    )  # 3 tokens, then 1 token
    second = torch.tensor([[[0.0, 0.0], [3.0, -0.25]]])  # one sample of 2 tokens, the last shard is short
    kept = _kept(tmp_path, [(first, torch.tensor([3, 1])), (second, torch.tensor([2]))], num_features=2)
    assert kept.read([0, 1]).equal(first)
    assert kept.read([1, 2]).equal(torch.stack([first[1, :2], second[0]]))  # padded to the rows' longest: 2 tokens
    assert kept.read([1]).shape == (1, 1, 2)
    part = sparse_part(first, torch.tensor([3, 1]), max_length=8)
    assert part["values"].tolist() == [1.5, -2.0, np.float32(1e-30)]  # a tiny value is kept, not thresholded
    assert part["counts"].tolist() == [2, 1] and part["positions"].dtype == np.uint16
    assert join_parts([part, part])["counts"].tolist() == [2, 1, 2, 1]


def test_damaged_kept_values_are_a_clear_error(tmp_path):
    kept = _kept(tmp_path, [(torch.ones(1, 2, 3), torch.tensor([2]))], num_features=3)
    path = tmp_path / "entry" / "tokens-00000.npz"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CacheError, match="delete that folder"):
        kept.read([0])


def test_a_set_made_by_hand_has_no_pools():
    made = ActivationSet(feature_ids=np.array([3]), sample_ids=np.array([0]), per_sample=np.ones((1, 1)))
    with pytest.raises(CacheError, match="extract_activations"):
        pool_examples(None, None, made, parse_config({}).activations)


class ForwardTokens:
    """The reference: per-token values by running the model again over the rows asked for."""

    def __init__(self, loaded, site, texts, feature_ids, config) -> None:
        self.loaded, self.site, self.texts, self.config = loaded, site, texts, config
        self.features = torch.from_numpy(feature_ids)

    def read(self, rows):
        texts = [self.texts[row] for row in rows]
        return forward_batch(self.loaded, self.site, texts, self.features, self.config).token_acts.float().cpu()


def _assert_close(kept, forward, path="") -> None:
    """Same structure, rows, tokens and positions; activations equal to float32 tolerance (the pass ran each row in
    a batch of other rows, padded to another length: the last bits can differ, ~5e-7 on values ~0.7 here)."""
    if isinstance(kept, np.ndarray):
        np.testing.assert_allclose(kept, forward, rtol=1e-5, atol=1e-6, err_msg=path)
    elif isinstance(kept, float):
        assert kept == pytest.approx(forward, rel=1e-5, abs=1e-6), path
    elif dataclasses.is_dataclass(kept):
        for field in dataclasses.fields(kept):
            _assert_close(getattr(kept, field.name), getattr(forward, field.name), f"{path}.{field.name}")
    elif isinstance(kept, dict):
        assert list(kept) == list(forward), path
        for key in kept:
            _assert_close(kept[key], forward[key], f"{path}[{key}]")
    elif isinstance(kept, (list, tuple)) and not (kept and isinstance(kept[0], (str, int, bool))):
        assert len(kept) == len(forward), path
        for i, (a, b) in enumerate(zip(kept, forward)):
            _assert_close(a, b, f"{path}[{i}]")
    else:
        assert kept == forward, path


def _sparse_sae(folder, d_in: int, d_sae: int = 12) -> dict:
    """A random ReLU SAE on layer 3's output whose latents fire on a few tokens each (an SAE's sparsity)."""
    rng = np.random.default_rng(0)
    W_enc = rng.normal(size=(d_in, d_sae)) / np.sqrt(d_in)
    weights = {"W_enc": W_enc, "b_enc": np.full(d_sae, -1.5), "W_dec": W_enc.T, "b_dec": np.zeros(d_in)}
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": d_sae}))
    save_file(
        {name: value.astype(np.float32) for name, value in weights.items()}, str(folder / "sae_weights.safetensors")
    )
    return {"kind": "sae", "module": "model.layers.3", "hook": "output", "sae": {"path": str(folder)}}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["neurons", "sae"])
def test_derived_from_kept_values_equal_a_forward_pass(tmp_path, subject_model, tiny_corpus, kind):
    if kind == "sae":
        site_settings = _sparse_sae(tmp_path / "sae", subject_model.model.config.hidden_size)
    else:
        site_settings = {"module": "model.layers.3.mlp.act_fn", "features": [5, 77, 300]}  # dense
    config = parse_config(
        {
            "corpus": {"num_samples": 40, "max_chars": 120, "seed": 7},
            "site": site_settings,
            "activations": {
                "batch_size": 6,
                "max_length": 24,
                "top_k": 4,
                "shard_size": 16,
                "cache_dir": str(tmp_path / "cache"),
            },
            "scorers": {
                **SMALL_CONVENTIONS,
            },
        }
    )
    site = build_site(config.site, subject_model)
    activation_set = extract_activations(subject_model, site, tiny_corpus, config.activations, progress=False)
    kept_values = activation_set.token_values.read(range(activation_set.sample_ids.size))
    density = float((kept_values != 0).float().mean())
    print(f"{kind}: {density:.3f} of the (token, feature) values are nonzero")
    assert 0 < density < (0.5 if kind == "sae" else 1)
    reference = dataclasses.replace(
        activation_set,
        token_values=ForwardTokens(
            subject_model, site, tiny_corpus["text"].tolist(), activation_set.feature_ids, config.activations
        ),
    )
    tokenizer, activations = subject_model.tokenizer, config.activations
    for derive in (
        lambda s: pool_examples(tokenizer, tiny_corpus, s, activations, per_quantile=2, num_low=3),
        lambda s: delphi_windows(tokenizer, tiny_corpus, s, activations, config.scorers.delphi, progress=False),
        lambda s: saebench_examples(tokenizer, tiny_corpus, s, activations, config.scorers.saebench, progress=False),
    ):
        kept, forward = derive(activation_set), derive(reference)
        assert kept and all(kept.values())
        _assert_close(kept, forward)
