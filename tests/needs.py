"""What a test needs from outside the package (the FADE reference, Chromium, PostgreSQL): absent on a
developer's machine, the test is skipped with how to install it; absent in CI (`CI` set), it fails, so a
broken install cannot turn an oracle or a browser check into a green skip."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def missing(message: str) -> NoReturn:
    """Skip with `message`, or fail with it in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: a missing requirement fails instead of skipping)")
    pytest.skip(message)


def import_or_missing(module: str, message: str) -> ModuleType:
    """`module` imported; when it cannot be (absent, or its own imports broken), `missing(message)`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing(f"{message} ({type(error).__name__}: {error})")
