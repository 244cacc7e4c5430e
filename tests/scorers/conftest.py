"""Fixtures of the scorer tests: planted records (scorer_records.py) and a loopback rater answering by keyword rules."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test folders are not packages; the helper modules beside this file are imported by their unique names.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scorer_records import TOPICS, planted_record  # noqa: E402
from scorer_responders import KeywordRater  # noqa: E402

from harness.config import LLMConfig  # noqa: E402
from harness.explain import FeatureRecord  # noqa: E402
from harness.llm import LLMClient  # noqa: E402
from harness.testing.loopback import LoopbackServer  # noqa: E402


@pytest.fixture(scope="session")
def planted_records() -> list[FeatureRecord]:
    return [planted_record(feature) for feature in range(len(TOPICS))]


@pytest.fixture
def rater() -> Iterator[LoopbackServer]:
    with LoopbackServer(KeywordRater()) as server:
        yield server


@pytest.fixture
def make_client(rater: LoopbackServer, tmp_path):
    """An LLMClient on the keyword rater (keyless loopback, short backoff, cache in tmp_path)."""
    clients = []

    def make(**overrides) -> LLMClient:
        settings = {
            "model": "openai/scripted",
            "api_base": rater.url,
            "concurrency": 32,
            "timeout_s": 30.0,
            "max_retries": 8,
            "max_invalid_retries": 6,
            "backoff_base_s": 0.005,
            "backoff_max_s": 0.05,
            "cache_path": str(tmp_path / "llm-cache.sqlite"),
        }
        client = LLMClient(LLMConfig(**(settings | overrides)), progress=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
