"""Faithfulness's shared work: the ContinuationEngine gives every feature, token for token, the continuations the
unshared computation gives it, while computing a factor that changes nothing once and batching across features."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from continuation_checks import (
    FACTORS,
    TEXTS,
    assert_rows_followed_and_left,
    engine_continuations,
    unshared_continuations,
)
from fade_pipeline_fixtures import write_saelens

from harness.config import FaithfulnessConfig, SAEConfig, SiteConfig, SubjectModelConfig
from harness.evaluate.fade.continuations import ContinuationEngine
from harness.evaluate.fade.faithfulness import faithfulness_prompts
from harness.evaluate.fade.sampling import random_subset
from harness.model import load_subject_model
from harness.sites import build_site

pytestmark = pytest.mark.slow

GENERATION = {"generation_length": 5, "max_prompt_tokens": 24}


@pytest.fixture(scope="module")
def loaded_model():
    return load_subject_model(SubjectModelConfig())


def test_neuron_features_get_the_unshared_continuations_with_factor_1_computed_once(loaded_model):
    site = build_site(SiteConfig(kind="neuron", module="model.layers.15.mlp.act_fn"), loaded_model)
    positions = [3, 0, 4, 2]
    asks = [(17, None, positions), (301, None, positions), (1024, None, positions)]
    # 10 rows a call: batches hold rows of two features, and of several factors and prompt lengths.
    answers, engine = engine_continuations(loaded_model, site, asks, GENERATION, batch_rows=10)
    for (feature, reference, _), answer in zip(asks, answers):
        unshared = unshared_continuations(loaded_model, site, feature, reference, positions, GENERATION)
        assert answer.texts == unshared, feature
    unchanged = FACTORS.index(1.0)
    assert answers[0].texts[unchanged] == answers[1].texts[unchanged] == answers[2].texts[unchanged]
    assert engine.rows_generated == len(asks) * len(positions) * (len(FACTORS) - 1) + len(positions)
    rows = engine.rows_generated
    assert engine.generate_calls == -(-rows // 10)  # every call full but the last: batches span features
    assert answers[0].texts[FACTORS.index(50.0)] != answers[0].texts[unchanged]  # steering matters here
    assert_rows_followed_and_left(engine, steered_rows=len(asks) * len(positions) * (len(FACTORS) - 1))


def test_sae_features_get_the_unshared_continuations_under_every_factor(loaded_model, tmp_path):
    width, latents = 576, 3
    rng = np.random.default_rng(0)
    W_enc = rng.normal(size=(width, latents)) / np.sqrt(width)
    sae = write_saelens(tmp_path / "sae", W_enc, np.zeros(latents), rng.normal(size=(latents, width)))
    site = build_site(SiteConfig(kind="sae", module="model.layers.10", sae=SAEConfig(path=str(sae))), loaded_model)
    positions = [1, 4, 0]
    # FADE's SAE steering sets the latent to factor x reference: no factor leaves the model as it is, so
    # nothing is shared; without a reference, factor 1 keeps the latent and is shared with the neuron case.
    asks = [(0, 4.0, positions), (2, 2.5, positions), (1, None, positions)]
    answers, engine = engine_continuations(loaded_model, site, asks, GENERATION, batch_rows=8)
    for (feature, reference, _), answer in zip(asks, answers):
        unshared = unshared_continuations(loaded_model, site, feature, reference, positions, GENERATION)
        assert answer.texts == unshared, feature
    assert engine.rows_generated == len(asks) * len(positions) * len(FACTORS)  # only feature 1 shares, with itself
    assert engine.unchanged_computed == len(positions)  # once per prompt, followed by every feature's rows
    assert_rows_followed_and_left(engine, steered_rows=len(asks) * len(positions) * len(FACTORS) - len(positions))
    assert answers[0].texts[FACTORS.index(50.0)] != answers[1].texts[FACTORS.index(50.0)]


@pytest.mark.parametrize("doomed_factors", [FACTORS, [1.0]], ids=["its-own-rows", "a-shared-row"])
def test_a_cancelled_feature_does_not_stop_the_others(loaded_model, doomed_factors):
    """Cancelled while waiting on its own row, or on the factor-1 row it shares with the other feature."""
    site = build_site(SiteConfig(kind="neuron", module="model.layers.15.mlp.act_fn"), loaded_model)
    positions = [2, 1]

    async def run():
        with ThreadPoolExecutor(1) as model_thread:
            loop = asyncio.get_running_loop()

            def on_model(function, *args, **kwargs):
                return loop.run_in_executor(model_thread, lambda: function(*args, **kwargs))

            engine = ContinuationEngine(loaded_model, site, TEXTS, on_model, batch_rows=4, **GENERATION)
            await engine.continuations(7, None, [0], [1.0])  # prompt lengths known: the next asks queue rows at once
            doomed = asyncio.ensure_future(engine.continuations(5, None, positions, doomed_factors))
            kept = asyncio.ensure_future(engine.continuations(6, None, positions, FACTORS))
            await asyncio.sleep(0)
            doomed.cancel()
            return await kept

    assert asyncio.run(run()).texts == unshared_continuations(loaded_model, site, 6, None, positions, GENERATION)


def test_faithfulness_prompts_are_the_references_draw_then_unused_ones_per_retry():
    settings = FaithfulnessConfig(num_samples=4, max_sparse_retries=3)
    rounds = faithfulness_prompts(10, settings, seed=7)
    again = faithfulness_prompts(10, settings, seed=7)
    assert [r.tolist() for r in rounds] == [r.tolist() for r in again]  # the same for every feature and call
    expected_first = random_subset(10, 4, rng=np.random.default_rng([7, 2**40]))
    assert rounds[0].tolist() == expected_first.tolist()
    assert [r.size for r in rounds] == [4, 4, 2]  # the last retry takes what is left; then rounds stop
    assert sorted(np.concatenate(rounds).tolist()) == list(range(10))
    assert faithfulness_prompts(10, settings, seed=8)[0].tolist() != rounds[0].tolist()
