"""The one place a rater is built from `fade.rater`, checked before a run, or made of an LLM client."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.config import FadeConfig, plugin_settings
from harness.files import identity_hash
from harness.registry import RATERS

if TYPE_CHECKING:
    from harness.llm import LLMClient, UsageLedger
    from harness.llm.tracing import CallTracer
    from harness.raters._protocol import Rater, RaterKind


# Registered raters built once per process for the same identity and corpus (FADE, the scorers and every
# variant share one, and with it what it computed, e.g. the embedding rater's embeddings).
_built: dict[tuple[str, str], Rater] = {}
_built_lock = threading.Lock()


def _provider(fade: FadeConfig) -> str:
    return fade.rater.model.split("/", 1)[0]


def registered_kind(fade: FadeConfig) -> RaterKind | None:
    """The registered rater kind the provider part of `fade.rater.model` names, or None for an LLM."""
    provider = _provider(fade)
    return RATERS.get(provider) if provider in RATERS else None


def rater_settings(fade: FadeConfig) -> Any:
    """The settings of the registered rater `fade.rater.model` names: its `settings_model` over what the config
    gives it (`fade.rater_settings.<name>`, the embedding rater's `fade.embedding_rater`), defaults where it gives
    none; None for an LLM or a rater without settings. Every registered rater reads its settings here."""
    kind = registered_kind(fade)
    if kind is None or kind.settings_model is None:
        return None
    where, given = fade.given_rater_settings(_provider(fade))
    return plugin_settings(kind, given, where)


def rater_label(fade: FadeConfig) -> str:
    """The rater's `label` without building it (the run's `rater` param, which `harness compare` and the
    leaderboard show): its kind's `label_for(fade)`, an LLM's (LLMRater) its model string."""
    kind = registered_kind(fade)
    if kind is None:
        from harness.raters._llm import LLMRater

        return LLMRater.label_for(fade)
    return kind.label_for(fade)


def build_rater(
    fade: FadeConfig,
    cache_dir: str | Path,
    corpus_texts: Sequence[str],
    *,
    progress: bool,
    ledger: UsageLedger | None = None,
    tracer: CallTracer | None = None,
) -> Rater:
    """The rater `fade.rater.model` names: a registered kind, or else an LLM rater for that model string.

    A registered rater is built once per process for its identity and corpus. An LLM rater is made afresh
    for each caller: its client holds that stage's usage, ledger, tracer and response-cache connection, and
    costs nothing to make.

    Args:
        fade: FADE settings (the rater and the registered raters' own sections).
        cache_dir: where an LLM rater's response cache lives.
        corpus_texts: the natural corpus, in corpus order (a registered rater may calibrate on it).
        progress: show the LLM client's progress bars.
        ledger: where an LLM rater also appends what it spends (a tracked run's stage ledger).
        tracer: records an LLM rater's calls as MLflow traces of the tracked run.
    """
    kind = registered_kind(fade)
    if kind is None:
        from harness.llm import LLMClient
        from harness.raters._llm import LLMRater

        return LLMRater(LLMClient(fade.rater, cache_dir, progress=progress), ledger, tracer)
    key = (identity_hash(kind.identity(fade)), identity_hash({"corpus": list(corpus_texts)}))
    with _built_lock:
        if key not in _built:
            _built[key] = kind(fade, corpus_texts)
        return _built[key]


def check_rater(fade: FadeConfig, cache_dir: str | Path) -> None:
    """The rater's own pre-flight checks (RaterKind.check): raise what building it would, before a run."""
    kind = registered_kind(fade)
    if kind is None:
        from harness.raters._llm import LLMRater

        LLMRater.check(fade, cache_dir)
    else:
        kind.check(fade, cache_dir)


def as_rater(client: Rater | LLMClient) -> Rater:
    """A rater as is; an LLM client (what callers of the scorers and FADE's calls may pass) as an LLM rater."""
    from harness.llm import LLMClient
    from harness.raters._llm import LLMRater

    return LLMRater(client) if isinstance(client, LLMClient) else client
