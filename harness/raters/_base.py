"""The rater registry and the one place a rater is built from `fade.rater`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from harness.config import FadeConfig
from harness.files import identity_hash
from harness.registry import RATERS

if TYPE_CHECKING:
    from harness.llm import LLMClient
    from harness.raters._embedding import EmbeddingRater

Rater = Union["LLMClient", "EmbeddingRater"]


# Registered raters built once per process for the same settings and corpus (FADE, the scorers and every
# variant share one, and with it its embeddings).
_built: dict[tuple[str, str, str], EmbeddingRater] = {}
_built_lock = threading.Lock()


def build_rater(fade: FadeConfig, cache_dir: str | Path, corpus_texts: Sequence[str], *, progress: bool) -> Rater:
    """The rater `fade.rater.model` names: a registered kind, or else an LLM client for that model string.

    Args:
        fade: FADE settings (the rater and the registered raters' own sections).
        cache_dir: where an LLM rater's response cache lives.
        corpus_texts: the natural corpus, in corpus order (a registered rater may calibrate on it).
        progress: show the LLM client's progress bars.
    """
    provider = fade.rater.model.split("/", 1)[0]
    if provider in RATERS:
        key = (fade.rater.model, fade.embedding_rater.fingerprint(), identity_hash({"corpus": list(corpus_texts)}))
        with _built_lock:
            if key not in _built:
                _built[key] = RATERS.get(provider)(fade, corpus_texts)
            return _built[key]
    from harness.llm import LLMClient

    return LLMClient(fade.rater, cache_dir, progress=progress)
