"""Faithfulness end to end: a planted latent that writes one token's unembedding, and stacked steering."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from fade_pipeline_fixtures import KEY_ENV, PLANTED_WORD, fade_config, unembedding_writer_sae, write_corpus
from transformers import GenerationConfig

from harness.config import SiteConfig, SubjectModelConfig
from harness.evaluate import ResultStore, evaluate_descriptions
from harness.evaluate.fade.continuations import generate_continuations
from harness.model import load_subject_model
from harness.sites import build_site
from harness.testing.loopback import LoopbackServer

pytestmark = pytest.mark.slow

FACTORS = [-1.0, 0.0, 1.0, 10.0]
PROMPTS = 6
# Short natural texts keep the full forward passes cheap; a few show the planted word, so Responsiveness is
# defined (the gate needs it defined, whatever its threshold).
TEXTS = [
    "Open the file, then read its first line.",
    "The loop runs until the list is empty.",
    "If the key is missing, then a KeyError is raised.",
    "A tuple cannot be changed after it is made.",
    "Sort the values, then print the largest one.",
    "The module defines two public functions.",
    "Each thread has its own stack.",
    "Import the package and call its main function.",
    "Strings are immutable sequences of characters.",
    "The default encoding is UTF-8.",
    "Check the return code, then decide what to do.",
    "Use a context manager to close the socket.",
]


@pytest.fixture(scope="module")
def loaded_model():
    return load_subject_model(SubjectModelConfig())


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-loopback-test")
    with LoopbackServer() as running:
        yield running


def test_planted_unembedding_writer_is_faithful_to_its_token(tmp_path, loaded_model, server):
    sae = unembedding_writer_sae(tmp_path / "sae", loaded_model, PLANTED_WORD)
    site = {"kind": "sae", "module": "model.norm", "sae": {"path": str(sae)}}
    faithfulness = {"num_samples": PROMPTS, "generation_length": 6, "modification_factors": FACTORS}
    # This latent reads the direction the model is about to write, not the word itself, so its Clarity
    # and Responsiveness stay below the default gate of 0.5; a gate of 0 lets faithfulness run anyway.
    config = fade_config(
        server.url,
        tmp_path / "cache",
        site,
        corpus=write_corpus(tmp_path / "corpus.jsonl", TEXTS),
        gini_threshold=0.0,
        faithfulness=faithfulness,
    )
    descriptions = pd.DataFrame({"feature": [0], "description": [f"mentions '{PLANTED_WORD}'"]})
    result = evaluate_descriptions(config, descriptions, tmp_path / "out", progress=False).results[0]

    assert result.scores.faithfulness.value >= 0.8
    assert result.scores.faithfulness_factor in (1.0, 10.0)
    assert result.p2_by_factor["0"] <= 0.2 and result.p2_by_factor["-1"] <= result.p2_by_factor["0"]
    assert result.steering_reference > 0  # the latent's max |activation| on the corpus sets the SAE steering scale
    assert result.generate_calls == 1  # 4 factors x 6 prompts in one batch
    continuations = ResultStore(tmp_path / "out").table(0, "continuations")
    steered = continuations[continuations["factor"] == 10.0]["continuation"]
    assert steered.str.contains(PLANTED_WORD).all()
    counts = result.factor_counts["10"]
    assert counts["rated_2"] == PROMPTS and counts["unrated"] == 0


def test_stacked_factors_give_what_steering_each_factor_alone_gives(loaded_model):
    site = build_site(SiteConfig(kind="neuron", module="model.layers.15.mlp.act_fn"), loaded_model)
    prompts = ["The os module provides a portable way", "Return the number of items in a container, or", "import sys"]
    factors = [0.0, 100.0, -100.0]

    stacked = generate_continuations(
        loaded_model, site, 17, None, prompts, factors, generation_length=4, max_prompt_tokens=64, batch_rows=64
    )
    assert stacked.generate_calls == 1
    tokenizer = loaded_model.tokenizer
    greedy = GenerationConfig(max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    encoded = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    for index, factor in enumerate(factors):
        with site.steer(loaded_model, 17, factor), torch.inference_mode():
            output = loaded_model.model.generate(**encoded, generation_config=greedy)
        alone = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
        assert stacked.texts[index] == alone, factor
    assert (
        stacked.texts[1] != stacked.texts[0] != stacked.texts[2]
    )  # the factor matters: the comparison means something
