"""Test folders are not packages: the helper modules of tests/ itself (launching.py) are put on the path for
every folder, after everything else, so they never shadow a real package. Fixtures every folder uses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def server():
    """A healthy loopback LLM server for a module's tests (a module wanting another one defines its own)."""
    from harness.testing.loopback import LoopbackServer

    with LoopbackServer() as running:
        yield running


@pytest.fixture
def own_store():
    """After the test MLflow points at no store again: the code under test points it at its config's store."""
    import mlflow

    yield
    mlflow.set_tracking_uri(None)
