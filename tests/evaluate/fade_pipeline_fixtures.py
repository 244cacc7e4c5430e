"""Planted features for the FADE pipeline tests: SAEs written in SAELens' layout, and a config for the loopback rater.

Imported explicitly by the pipeline test files (pytest puts this folder on sys.path).

- `token_detector`: a latent on `model.embed_tokens` that fires (ReLU) exactly on the single-token forms
  of a word (" then", "then", "Then", " Then"): its encoder is the normalised sum of their embedding
  directions, its bias sits halfway between the lowest of them and the highest other token of the whole
  vocabulary, so no other token reaches it.
- `unembedding_writer`: a latent on `model.norm` whose decoder row is the word's lm_head row: steering
  it up makes the model write the word. Its encoder reads the same direction, with a bias so it fires
  only where the model already leans to the word.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file

from harness.config import HarnessConfig, parse_config

KEY_ENV = "FADE_TEST_LOOPBACK_KEY"
WIDTH = 576  # SmolLM2-135M hidden size
# Words whose every single-token form is separable from the rest of the vocabulary (checked by
# `token_detector`), each in a few python-docs samples of the 120-sample corpus below.
PLANTED_WORD = "then"  # in 5 of the 120 samples
UNRELATED_WORD = "each"  # in 3 samples, none of them with "then"
OTHER_WORD = "such"
ABSENT_WORD = "zebra"  # in no sample


def word_token_ids(tokenizer: Any, word: str) -> list[int]:
    forms = (word, " " + word, word.capitalize(), " " + word.capitalize())
    ids = [tokenizer(form, add_special_tokens=False).input_ids for form in forms]
    return [single[0] for single in ids if len(single) == 1]


def token_detector(loaded_model: Any, word: str) -> tuple[np.ndarray, float]:
    """Encoder column and bias of a ReLU latent on the embeddings that fires on `word`'s tokens only."""
    embeddings = loaded_model.model.get_input_embeddings().weight.detach().float()
    ids = word_token_ids(loaded_model.tokenizer, word)
    direction = torch.nn.functional.normalize(embeddings[ids], dim=1).sum(0)
    direction = direction / direction.norm()
    scores = embeddings @ direction
    lowest_form = scores[ids].min().item()
    scores[ids] = -torch.inf
    highest_other = scores.max().item()
    assert lowest_form > highest_other, f"{word!r}: its tokens are not linearly separable from the vocabulary"
    return direction.numpy(), -(lowest_form + highest_other) / 2


def write_corpus(path: Path, texts: list[str]) -> dict[str, Any]:
    """A small local corpus file (JSON Lines) and the corpus config section that reads it whole."""
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
    return {"source": str(path), "num_samples": None, "min_chars": 1, "shuffle": False}


def write_saelens(folder: Path, W_enc: np.ndarray, b_enc: np.ndarray, W_dec: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = W_enc.shape
    (folder / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": d_sae, "architecture": "standard"}))
    weights = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": np.zeros(d_in)}
    save_file({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()},
              str(folder / "sae_weights.safetensors"))  # fmt: skip
    return folder


def token_detector_sae(folder: Path, loaded_model: Any, words: list[str]) -> Path:
    """An SAE on model.embed_tokens with latent i detecting words[i] (decoder = encoder transposed)."""
    columns, biases = zip(*(token_detector(loaded_model, word) for word in words))
    W_enc = np.stack(columns, axis=1)
    return write_saelens(folder, W_enc, np.array(biases), W_enc.T)


def unembedding_writer_sae(folder: Path, loaded_model: Any, word: str, bias: float = -5.0) -> Path:
    """An SAE on model.norm: latent 0 writes `word`'s lm_head row; latent 1 is random."""
    (token,) = loaded_model.tokenizer(" " + word, add_special_tokens=False).input_ids
    row = loaded_model.model.get_output_embeddings().weight.detach().float()[token].numpy()
    noise = np.random.default_rng(0).normal(size=WIDTH) / np.sqrt(WIDTH)
    W_enc = np.stack([row / np.linalg.norm(row), noise], axis=1)
    return write_saelens(folder, W_enc, np.array([bias, 0.0]), np.stack([row, noise]))


def fade_config(
    server_url: str,
    cache_dir: Path,
    site: dict[str, Any],
    corpus: dict[str, Any] | None = None,
    max_length: int = 128,
    **fade: Any,
) -> HarnessConfig:
    """Small FADE settings, rated by the loopback server without LLM cache, so the server's request count
    is every call made. The corpus defaults to the 120 python-docs samples the words above were checked on."""
    settings = {
        "rater": {
            "model": "openai/scripted",
            "api_base": server_url,
            "api_key_env": KEY_ENV,
            "cache": False,
            "backoff_base_s": 0.005,
            "backoff_max_s": 0.05,
        },
        "clarity_llm_calls": 3,
        "num_samples": 60,
        "faithfulness": {"num_samples": 6, "generation_length": 6, "modification_factors": [0, 10]},
    }
    for name, value in fade.items():
        settings[name] = {**settings.get(name, {}), **value} if isinstance(value, dict) else value
    return parse_config(
        {
            "corpus": corpus or {"num_samples": 120},
            "site": site,
            "activations": {"max_length": max_length, "cache_dir": str(cache_dir)},
            "fade": settings,
        }
    )
