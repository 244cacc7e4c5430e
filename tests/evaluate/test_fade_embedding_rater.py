"""FADE end to end with the embedding rater: the real subject model, a planted latent, the real MiniLM judge.

The latent fires exactly on the tokens of one content word of the corpus; the scripted loopback server
writes Clarity's synthetic samples (fade.generator) and the embedding rater rates every natural sample.
A description of the word's topic must beat an unrelated one on Responsiveness and Purity, and the only
LLM calls are the generator's.
"""

from __future__ import annotations

import pandas as pd
import pytest
from fade_pipeline_fixtures import KEY_ENV, fade_config, token_detector_sae

from harness.config import SubjectModelConfig
from harness.evaluate import evaluate_descriptions
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer

pytestmark = pytest.mark.slow

WORD = "class"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("embedding-rater")
    loaded_model = load_subject_model(SubjectModelConfig())
    sae = token_detector_sae(tmp_path / "sae", loaded_model, [WORD, WORD])
    site = {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}}
    descriptions = pd.DataFrame(
        {"feature": [0, 1], "description": ["classes, inheritance and object-oriented programming", "cooking recipes"]}
    )
    with pytest.MonkeyPatch.context() as patch, LoopbackServer() as server:
        patch.setenv(KEY_ENV, "sk-loopback-test")
        scripted = fade_config(server.url, tmp_path / "cache", site).fade.rater.model_dump()
        config = fade_config(
            server.url, tmp_path / "cache", site, corpus={"num_samples": 300},
            rater={"model": "embedding/all-minilm-l6-v2", "api_base": None}, generator=scripted,
        )  # fmt: skip
        result = evaluate_descriptions(config, descriptions, tmp_path / "out", progress=False)
        return result, config, server.requests


def test_a_description_of_the_word_beats_an_unrelated_one(evaluated):
    result, _, _ = evaluated
    true, unrelated = result.results[0].scores, result.results[1].scores
    assert true.responsiveness.value > unrelated.responsiveness.value + 0.3
    assert true.purity.value > unrelated.purity.value + 0.3
    assert true.counts["unrated"] == 0 and true.counts["rated_2"] > 0


def test_only_the_generator_is_asked_an_llm(evaluated):
    result, config, requests = evaluated
    clarity_calls = config.fade.clarity_llm_calls
    assert all(feature.llm_requests == clarity_calls for feature in result.results.values())
    assert requests == clarity_calls * len(result.results)
