"""Fixtures for the LLM layer: a real loopback server and configs pointing at it through litellm."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test folders are not packages; llm_prompts.py beside this file is imported by its own, unique name (the
# subprocesses of test_llm_cache.py put this folder on their sys.path themselves).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_prompts import KEY_ENV  # noqa: E402

from harness.config import LLMConfig  # noqa: E402
from harness.testing.loopback import LoopbackServer  # noqa: E402

PLANTED_KEY = "sk-test-PLANTED-0d1e2a3d4b5e6e7f"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)
    return PLANTED_KEY


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def make_config(server: LoopbackServer, api_key: str, tmp_path):
    """LLMConfig for the loopback server with short backoff; keyword overrides."""

    def make(**overrides) -> LLMConfig:
        settings = {
            "model": "openai/scripted",
            "api_base": server.url,
            "api_key_env": KEY_ENV,
            "concurrency": 32,
            "timeout_s": 30.0,  # far above any answer time, so no retry comes from a slow machine
            "max_retries": 12,
            "max_invalid_retries": 12,
            "backoff_base_s": 0.005,
            "backoff_max_s": 0.05,
            "cache_path": str(tmp_path / "llm-cache.sqlite"),
        }
        settings.update(overrides)
        return LLMConfig(**settings)

    return make
