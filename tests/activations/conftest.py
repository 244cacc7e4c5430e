import pytest

from harness.config import ActivationConfig, CorpusConfig, SubjectModelConfig
from harness.corpus import load_corpus
from harness.model import load_subject_model


@pytest.fixture(scope="session")
def subject_model():
    return load_subject_model(SubjectModelConfig())


@pytest.fixture(scope="session")
def tiny_corpus():
    """40 python-docs samples of at most 120 characters."""
    return load_corpus(CorpusConfig(num_samples=40, max_chars=120, seed=7))


@pytest.fixture
def engine_config(tmp_path):
    """Small batches and shards so that every code path (several batches per shard, a short last shard) runs."""
    return ActivationConfig(batch_size=6, max_length=20, top_k=4, shard_size=16, cache_dir=str(tmp_path / "cache"))
