"""FADE end to end on planted features: the real subject model, a real loopback rater, known answers.

The rater rates 2 exactly the sequences that contain the concept's quoted word, and generates sentences
containing it; the planted latent fires exactly on that word's tokens. So a true description must score
(nearly) 1 on Clarity, Responsiveness and Purity, and an unrelated one (nearly) 0.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from fade_pipeline_fixtures import (
    ABSENT_WORD,
    KEY_ENV,
    OTHER_WORD,
    PLANTED_WORD,
    UNRELATED_WORD,
    fade_config,
    token_detector_sae,
)

from harness.config import SubjectModelConfig
from harness.evaluate import ResultStore, evaluate_descriptions
from harness.model import load_subject_model
from harness.testing.loopback import LoopbackServer

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def loaded_model():
    return load_subject_model(SubjectModelConfig())


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, loaded_model):
    """Latents 0 and 1 detect 'then', latent 2 detects 'such'; described truly, unrelatedly, absently."""
    tmp_path = tmp_path_factory.mktemp("known-answers")
    sae = token_detector_sae(tmp_path / "sae", loaded_model, [PLANTED_WORD, PLANTED_WORD, OTHER_WORD])
    site = {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}}
    descriptions = pd.DataFrame(
        {
            "feature": [0, 1, 2],
            "description": [f"mentions '{PLANTED_WORD}'", f"mentions '{UNRELATED_WORD}'", f"mentions '{ABSENT_WORD}'"],
        }
    )
    with pytest.MonkeyPatch.context() as patch, LoopbackServer() as server:
        patch.setenv(KEY_ENV, "sk-loopback-test")
        config = fade_config(server.url, tmp_path / "cache", site)
        result = evaluate_descriptions(config, descriptions, tmp_path / "out", progress=False)
        return result, config, server.requests


def test_true_description_scores_high_and_unrelated_scores_low(evaluated):
    result, _, _ = evaluated
    true, unrelated = result.results[0].scores, result.results[1].scores
    for name in ("clarity", "responsiveness", "purity"):
        assert getattr(true, name).value >= 0.9, name
        assert getattr(unrelated, name).value <= 0.2, name
    assert true.counts["rated_2"] == 5 and unrelated.counts["rated_2"] == 3  # samples with the word
    # Clarity and Responsiveness pass the gate for the true description only.
    assert true.faithfulness.defined
    assert unrelated.faithfulness.value is None and unrelated.faithfulness.reason == "below_gini_threshold"


def test_undefined_scores_are_null_with_reasons_and_the_run_goes_on(evaluated):
    result, _, _ = evaluated
    absent = result.results[2].scores
    assert absent.clarity.defined  # synthetic 'zebra' sentences exist; the latent just does not fire on them
    assert absent.responsiveness.reason == absent.purity.reason == "no_rated_2_samples"
    assert absent.faithfulness.reason == "clarity_or_responsiveness_undefined"
    row = result.scores.set_index("feature").loc[2]
    assert pd.isna(row["responsiveness"]) and row["responsiveness_reason"] == "no_rated_2_samples"
    assert set(result.computed) == {0, 1, 2} and not result.reused


def test_llm_calls_per_feature_are_the_reference_count(evaluated):
    result, config, server_requests = evaluated
    fade = config.fade
    store = ResultStore(result.output_dir)
    for feature, feature_result in result.results.items():
        rounds = store.table(feature, "natural_ratings")["round"].value_counts()
        # The reference: clarity_llm_calls generation calls, ceil(n / batch) rating calls per round of
        # natural samples (no failures here, so no retry calls), and per factor ceil(prompts / batch).
        expected = fade.clarity_llm_calls + sum(math.ceil(count / fade.rating_batch_size) for count in rounds)
        if feature_result.scores.faithfulness.defined:
            prompts = feature_result.scores.counts["faithfulness_prompts"]
            expected += len(fade.faithfulness.modification_factors) * math.ceil(prompts / fade.rating_batch_size)
        assert feature_result.llm_requests == expected, feature
        assert feature_result.llm_failures == 0
    # Fewer than retry_sparse_threshold samples were rated 2, so a second round was drawn for every feature.
    assert all(result.results[f].scores.counts["sparse_retry_samples"] == 60 for f in result.results)
    assert server_requests == sum(r.llm_requests for r in result.results.values())


def test_tables_and_plots_are_stored_per_feature(evaluated):
    result, config, _ = evaluated
    store = ResultStore(result.output_dir)
    true = result.results[0]
    assert set(true.files) == {
        "synthetic.csv", "natural_ratings.csv", "continuations.csv", "clarity.png", "ratings.png", "faithfulness.png", "radar.png",
    }  # fmt: skip
    assert "continuations.csv" not in result.results[1].files and "faithfulness.png" not in result.results[1].files
    for feature, feature_result in result.results.items():
        for name in feature_result.files:
            data = (store.folder(feature) / name).read_bytes()
            assert data.startswith(PNG_MAGIC) if name.endswith(".png") else data
    synthetic = store.table(0, "synthetic")
    assert len(synthetic) == true.scores.counts["synthetic"] == 10  # the scripted rater's ten sentences
    assert (synthetic["activation"] > 0).all() and synthetic["text"].str.contains(PLANTED_WORD, case=False).all()
    ratings = store.table(0, "natural_ratings")
    assert ratings["rating"].value_counts().to_dict() == {0: true.scores.counts["rated_0"], 2: 5}
    assert ((ratings["activation"] > 0) == (ratings["rating"] == 2)).all()
    continuations = store.table(0, "continuations")
    factors = config.fade.faithfulness.modification_factors
    assert len(continuations) == len(factors) * config.fade.faithfulness.num_samples
    assert sorted(continuations["factor"].unique()) == factors
    assert true.generate_calls == 1  # every factor stacked into one batch
    assert set(true.p2_by_factor) == {"0", "10"}
    scores_file = pd.read_csv(result.output_dir / "scores.csv")
    assert scores_file["feature"].tolist() == [0, 1, 2]
    assert scores_file.loc[0, "clarity"] == pytest.approx(true.scores.clarity.value)
