"""The engine's numbers against direct computations: plain hooks on a full forward, hidden states,
and an SAE latent planted on one token's embedding."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from harness.activations import extract_activations
from harness.config import SAEConfig, SiteConfig
from harness.sites import build_site

pytestmark = pytest.mark.slow


def full_forward_capture(subject_model, texts, max_length, captures):
    """Padded batch through the whole model with plain forward hooks; {name: output} and the attention mask."""
    model = subject_model.model
    encoded = subject_model.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    outputs = {}
    handles = [
        model.get_submodule(name).register_forward_hook(lambda _m, _a, out, name=name: outputs.__setitem__(name, out))
        for name in captures
    ]
    try:
        with torch.inference_mode():
            hidden = model(**encoded, output_hidden_states=True).hidden_states
    finally:
        for handle in handles:
            handle.remove()
    return {name: value.numpy() for name, value in outputs.items()}, hidden, encoded


def signed_max_abs(token_acts, valid):
    """(samples, tokens, F), (samples, tokens) -> values and positions, by hand."""
    score = np.where(valid[..., None], np.abs(token_acts), -1.0)
    positions = score.argmax(axis=1)
    return np.take_along_axis(token_acts, positions[:, None, :], axis=1)[:, 0, :], positions


def test_neuron_activations_and_top_examples_match_a_direct_computation(subject_model, tiny_corpus, engine_config):
    features = [0, 17, 500, 1535]
    site = build_site(SiteConfig(module="model.layers.3.mlp.act_fn"), subject_model)
    result = extract_activations(subject_model, site, tiny_corpus, engine_config, features=features, progress=False)

    texts = tiny_corpus["text"].tolist()
    outputs, _, encoded = full_forward_capture(
        subject_model, texts, engine_config.max_length, ["model.layers.3.mlp.act_fn"]
    )
    valid = encoded["attention_mask"].numpy().astype(bool)
    direct = np.where(valid[..., None], outputs["model.layers.3.mlp.act_fn"][..., features], 0.0)
    expected, positions = signed_max_abs(direct, valid)

    np.testing.assert_array_equal(result.feature_ids, features)
    np.testing.assert_array_equal(result.sample_ids, tiny_corpus["sample_id"])
    np.testing.assert_allclose(result.per_sample, expected, rtol=1e-4, atol=1e-5)
    for j, feature in enumerate(features):
        np.testing.assert_allclose(result.column(feature), expected[:, j], rtol=1e-4, atol=1e-5)
        true_top = np.argsort(-expected[:, j], kind="stable")[: engine_config.top_k]
        examples = result.top_examples[feature]
        assert [example.sample_id for example in examples] == tiny_corpus["sample_id"].to_numpy()[true_top].tolist()
        for example, row in zip(examples, true_top):
            length = int(valid[row].sum())
            assert len(example.tokens) == length and example.text == texts[row]
            np.testing.assert_allclose(example.activations, direct[row, :length, j], rtol=1e-4, atol=1e-5)
            assert example.max_position == positions[row, j]
            assert example.max_activation == pytest.approx(expected[row, j], rel=1e-4, abs=1e-5)
            assert "".join(example.tokens) == subject_model.tokenizer.decode(encoded["input_ids"][row, :length])


def test_gated_neuron_and_residual_sites_match_direct_computation(subject_model, tiny_corpus, engine_config):
    texts = tiny_corpus["text"].tolist()
    names = ["model.layers.2.mlp.act_fn", "model.layers.2.mlp.up_proj"]
    outputs, hidden, encoded = full_forward_capture(subject_model, texts, engine_config.max_length, names)
    valid = encoded["attention_mask"].numpy().astype(bool)

    gated = build_site(SiteConfig(module="model.layers.2.mlp.down_proj", hook="input"), subject_model)
    result = extract_activations(subject_model, gated, tiny_corpus, engine_config, features=[3, 900], progress=False)
    neuron = (outputs[names[0]] * outputs[names[1]])[..., [3, 900]]
    np.testing.assert_allclose(
        result.per_sample, signed_max_abs(np.where(valid[..., None], neuron, 0), valid)[0], rtol=1e-4, atol=1e-5
    )

    residual = build_site(SiteConfig(module="model.layers.2"), subject_model)
    result = extract_activations(
        subject_model, residual, tiny_corpus, engine_config, features=[0, 5, 575], progress=False
    )
    stream = hidden[3].numpy()[..., [0, 5, 575]]  # hidden_states[0] is the embedding output
    np.testing.assert_allclose(
        result.per_sample, signed_max_abs(np.where(valid[..., None], stream, 0), valid)[0], rtol=1e-4, atol=1e-4
    )


def test_skipped_positions_and_special_tokens_are_ignored(subject_model, tiny_corpus, engine_config):
    corpus = tiny_corpus.copy()
    corpus.loc[0, "text"] = "Intro<|im_end|> and the rest of it"
    config = engine_config.model_copy(update={"skip_first_positions": 1, "skip_special_tokens": True})
    site = build_site(SiteConfig(module="model.layers.1.mlp.act_fn"), subject_model)
    result = extract_activations(subject_model, site, corpus, config, features=[8, 99], progress=False)

    texts = corpus["text"].tolist()
    outputs, _, encoded = full_forward_capture(subject_model, texts, config.max_length, ["model.layers.1.mlp.act_fn"])
    ids = encoded["input_ids"].numpy()
    valid = encoded["attention_mask"].numpy().astype(bool) & ~np.isin(ids, subject_model.tokenizer.all_special_ids)
    valid[:, 0] = False
    expected = signed_max_abs(np.where(valid[..., None], outputs["model.layers.1.mlp.act_fn"][..., [8, 99]], 0), valid)[
        0
    ]
    np.testing.assert_allclose(result.per_sample, expected, rtol=1e-4, atol=1e-5)

    special_position = int(np.flatnonzero(ids[0] == subject_model.tokenizer.convert_tokens_to_ids("<|im_end|>"))[0])
    for examples in result.top_examples.values():
        for example in examples:
            assert 0 in example.ignored_positions and example.activations[0] == 0.0
            assert example.max_position not in example.ignored_positions
            if example.sample_id == corpus["sample_id"][0]:
                assert special_position in example.ignored_positions


def plant_token_sae(subject_model, folder, token_ids):
    """A ReLU SAE on the embedding output whose latent j fires exactly on token token_ids[j]."""
    embeddings = subject_model.model.get_input_embeddings().weight.detach().float().numpy()
    columns, biases, margins = [], [], []
    for token in token_ids:
        direction = embeddings[token] / np.linalg.norm(embeddings[token])
        scores = embeddings @ direction
        own, runner_up = scores[token], np.max(np.delete(scores, token))
        assert own - runner_up > 1e-3, "the token's embedding must stand out along its own direction"
        columns.append(direction)
        biases.append(-(own + runner_up) / 2)
        margins.append((own - runner_up) / 2)
    W_enc = np.stack(columns, axis=1).astype(np.float32)
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(
        json.dumps({"d_in": W_enc.shape[0], "d_sae": W_enc.shape[1], "activation_fn": "relu"})
    )
    save_file({"W_enc": W_enc, "b_enc": np.array(biases, np.float32), "W_dec": np.ascontiguousarray(W_enc.T),
               "b_dec": np.zeros(W_enc.shape[0], np.float32)}, str(folder / "sae_weights.safetensors"))  # fmt: skip
    return np.array(margins, np.float32)


def test_planted_sae_latent_fires_exactly_on_its_token(subject_model, tiny_corpus, engine_config, tmp_path):
    tokenizer = subject_model.tokenizer
    encoded = tokenizer(tiny_corpus["text"].tolist(), truncation=True, max_length=engine_config.max_length)
    present = [set(ids) for ids in encoded["input_ids"]]
    counts = {token: sum(token in ids for ids in present) for token in set().union(*present)}
    # tokens found in some samples but not all, so that "fires" and "silent" both occur
    tokens = sorted((token for token, count in counts.items() if 5 <= count <= 30), key=lambda t: (-counts[t], t))[:3]
    margins = plant_token_sae(subject_model, tmp_path / "planted", tokens)
    site = build_site(
        SiteConfig(kind="sae", module="model.embed_tokens", sae=SAEConfig(path=str(tmp_path / "planted"))),
        subject_model,
    )
    result = extract_activations(subject_model, site, tiny_corpus, engine_config, progress=False)

    for j, token in enumerate(tokens):
        contains = np.array([token in ids for ids in present])
        column = result.column(j)
        np.testing.assert_array_equal(column > 0, contains)
        np.testing.assert_allclose(column[contains], margins[j], rtol=1e-4)
        for example in result.top_examples[j]:
            row = int(np.flatnonzero(result.sample_ids == example.sample_id)[0])
            if contains[row]:
                assert encoded["input_ids"][row][example.max_position] == token
                np.testing.assert_array_equal(np.flatnonzero(example.activations > 0),
                                              np.flatnonzero(np.array(encoded["input_ids"][row]) == token))  # fmt: skip
