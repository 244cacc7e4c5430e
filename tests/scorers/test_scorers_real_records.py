"""Every scorer on records the real pipeline builds: SmolLM2, planted SAE latents, extract_activations,
pool_examples, build_feature_records. Known answer for the LLM scorers: a latent firing exactly on 'then'
described truly beats it described with the other latent's word."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The planted token-detector SAE of the FADE pipeline tests (tests/evaluate/fade_pipeline_fixtures.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluate"))

from fade_pipeline_fixtures import OTHER_WORD, PLANTED_WORD, token_detector_sae  # noqa: E402

from harness.activations import (
    extract_activations,  # noqa: E402
    pool_examples,  # noqa: E402
)
from harness.config import ScorersConfig, SubjectModelConfig, parse_config  # noqa: E402
from harness.corpus import load_corpus  # noqa: E402
from harness.evaluate.scorers import run_scorers, scoring_examples  # noqa: E402
from harness.explain import build_feature_records  # noqa: E402
from harness.model import load_subject_model  # noqa: E402
from harness.sites import build_site  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_records(tmp_path_factory):
    """Latent 0 fires on 'then', latent 1 on 'such' (python-docs, 120 samples)."""
    tmp_path = tmp_path_factory.mktemp("scorer-records")
    loaded = load_subject_model(SubjectModelConfig())
    sae = token_detector_sae(tmp_path / "sae", loaded, [PLANTED_WORD, OTHER_WORD])
    config = parse_config(
        {
            "corpus": {"num_samples": 120},
            "site": {"kind": "sae", "module": "model.embed_tokens", "sae": {"path": str(sae)}},
            "activations": {"max_length": 128, "cache_dir": str(tmp_path / "cache")},
        }
    )
    corpus = load_corpus(config.corpus, loaded.tokenizer)
    site = build_site(config.site, loaded)
    activation_set = extract_activations(loaded, site, corpus, config.activations, progress=False)
    pools = pool_examples(loaded.tokenizer, corpus, activation_set, config.activations)
    return build_feature_records(activation_set, pools)


def test_pools_give_both_kinds_of_example(real_records):
    for record in real_records:
        labelled = scoring_examples(record, ScorersConfig().detection)
        activating = [item for item in labelled if item.activating]
        assert activating and len(labelled) > len(activating)
        word = [PLANTED_WORD, OTHER_WORD][record.feature]
        assert all(word in item.example.text.lower() for item in activating)


def test_true_description_beats_the_swapped_one_on_every_scorer(real_records, make_client):
    config = ScorersConfig(enabled=["detection", "fuzzing", "simulation", "embedding", "intruder"])
    true = {0: f"the word '{PLANTED_WORD}'", 1: f"the word '{OTHER_WORD}'"}
    swapped = {0: true[1], 1: true[0]}
    client = make_client()
    true_table = run_scorers(real_records, true, config, client, progress=False).set_index("feature")
    swapped_table = run_scorers(real_records, swapped, config, client, progress=False).set_index("feature")
    for name in config.enabled:
        assert true_table[f"{name}_reason"].isna().all(), name
    for name in ("detection", "fuzzing", "simulation"):  # the rater reads the description perfectly
        assert (true_table[name] > swapped_table[name].fillna(-1.0)).all(), name
    assert (true_table["detection"] == 1.0).all() and (true_table["fuzzing"] == 1.0).all()
    # No known answer for the embedding: MiniLM hardly relates "the word 'then'" to sentences using it
    # (AUROC near or below 0.5 here), which is why it is the cheap screen, not the verdict.
    assert true_table["embedding"].between(0, 1).all() and (true_table["embedding_examples"] > 5).all()
    # The intruder reads no description: the same trials and answers for both, and the rater, reading the
    # marks, finds the one example whose marked token is not the latent's word.
    assert true_table["intruder"].equals(swapped_table["intruder"])
    assert (true_table["intruder"] == 1.0).all() and (true_table["intruder_trials"] == 10).all()
