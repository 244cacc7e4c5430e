"""Prompt-prefix reuse on Gemma 2: the ContinuationEngine, reusing the prompts' pass below the site, gives every
feature token for token what `generate` gives it, on a tiny random Gemma 2 whose sliding window is shorter than
prompt + continuation and whose attention and final logits are soft-capped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from continuation_checks import (
    FACTORS,
    TEXTS,
    assert_rows_followed_and_left,
    engine_continuations,
    unshared_continuations,
)
from fade_pipeline_fixtures import write_saelens
from transformers import Gemma2Config, Gemma2ForCausalLM

from harness.config import SAEConfig, SiteConfig, SubjectModelConfig
from harness.evaluate.fade.continuations import prompt_lengths
from harness.evaluate.fade.prompt_prefix import site_layer
from harness.model import load_subject_model
from harness.sites import build_site

pytestmark = pytest.mark.slow  # borrows the embedded subject model's tokenizer

GENERATION = {"generation_length": 8, "max_prompt_tokens": 24}
SLIDING_WINDOW = 6  # shorter than every prompt + continuation: the sliding-window layers see only part of it
WIDTH = 64


@pytest.fixture(scope="module")
def tiny_gemma2(tmp_path_factory):
    """A random 4-layer Gemma 2 (sliding, full, sliding, full), saved and loaded as a local model folder.

    Untied, widely initialised weights make continuations vary with the prompt and the steering; the final
    cap is small enough that tanh saturates in float32, so ties decide the argmax and a missing cap shows.
    """
    tokenizer = load_subject_model(SubjectModelConfig()).tokenizer
    config = Gemma2Config(
        vocab_size=len(tokenizer),
        hidden_size=WIDTH,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=SLIDING_WINDOW,
        attn_logit_softcapping=5.0,
        final_logit_softcapping=0.5,
        initializer_range=0.2,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-gemma2")
    Gemma2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    loaded = load_subject_model(SubjectModelConfig(name=str(folder), device="cpu"))
    assert loaded.model.config.layer_types == ["sliding_attention", "full_attention"] * 2
    assert (
        min(prompt_lengths(loaded, TEXTS, GENERATION["max_prompt_tokens"])) + GENERATION["generation_length"]
        > SLIDING_WINDOW
    )
    return loaded


def test_site_layer_is_the_gemma2_layer_holding_the_site(tiny_gemma2):
    def layer_of(module):
        return site_layer(tiny_gemma2, build_site(SiteConfig(kind="neuron", module=module), tiny_gemma2))

    assert layer_of("model.layers.2.mlp.act_fn") == 2
    assert layer_of("model.layers.3.mlp.down_proj") == 3
    assert layer_of("model.layers.0.mlp.act_fn") is None  # no layer below it: nothing to share


def test_neuron_features_get_the_unshared_continuations(tiny_gemma2):
    site = build_site(SiteConfig(kind="neuron", module="model.layers.2.mlp.act_fn"), tiny_gemma2)
    assert site_layer(tiny_gemma2, site) == 2  # the engine reuses the pass through layers 0 and 1
    positions = [3, 0, 4, 2]
    asks = [(17, None, positions), (101, None, positions)]
    answers, engine = engine_continuations(tiny_gemma2, site, asks, GENERATION, batch_rows=10)
    for (feature, reference, _), answer in zip(asks, answers):
        unshared = unshared_continuations(tiny_gemma2, site, feature, reference, positions, GENERATION)
        assert answer.texts == unshared, feature
    unchanged = FACTORS.index(1.0)
    assert answers[0].texts[unchanged] == answers[1].texts[unchanged]
    assert engine.rows_generated == len(asks) * len(positions) * (len(FACTORS) - 1) + len(positions)
    assert answers[0].texts[FACTORS.index(50.0)] != answers[0].texts[unchanged]  # steering matters here
    assert_rows_followed_and_left(engine, steered_rows=len(asks) * len(positions) * (len(FACTORS) - 1))


def test_sae_features_get_the_unshared_continuations_under_every_factor(tiny_gemma2, tmp_path):
    latents = 3
    rng = np.random.default_rng(0)
    W_enc = rng.normal(size=(WIDTH, latents)) / np.sqrt(WIDTH)
    sae = write_saelens(tmp_path / "sae", W_enc, np.zeros(latents), rng.normal(size=(latents, WIDTH)))
    site = build_site(SiteConfig(kind="sae", module="model.layers.1", sae=SAEConfig(path=str(sae))), tiny_gemma2)
    assert site_layer(tiny_gemma2, site) == 1
    positions = [1, 4, 0]
    asks = [(0, 4.0, positions), (2, 2.5, positions), (1, None, positions)]
    answers, engine = engine_continuations(tiny_gemma2, site, asks, GENERATION, batch_rows=8)
    for (feature, reference, _), answer in zip(asks, answers):
        unshared = unshared_continuations(tiny_gemma2, site, feature, reference, positions, GENERATION)
        assert answer.texts == unshared, feature
    assert answers[0].texts[FACTORS.index(50.0)] != answers[1].texts[FACTORS.index(50.0)]
    # Setting a random SAE's latent changes this random model's tokens under every factor: every row leaves,
    # some after following a while.
    assert_rows_followed_and_left(
        engine, steered_rows=len(asks) * len(positions) * len(FACTORS) - len(positions), some_to_the_end=False
    )
