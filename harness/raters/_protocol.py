"""What FADE and the scorers may ask a rater, as capabilities, and what the rater registry holds.

Callers ask `rater.supports(Capability...)` and use the method that capability names; a rater declares
the capabilities it has and implements those methods. A rater class may subclass `Rater` to inherit
`supports` and, for what it cannot do, methods that say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from harness.errors import EvaluationError
from harness.llm.types import Usage

if TYPE_CHECKING:
    from pydantic import BaseModel

    from harness.config import FadeConfig
    from harness.llm import LLMClient


class Capability(StrEnum):
    """What a rater can be asked; each names the member that answers it."""

    PROMPTS = "prompts"  # `chat`: a chat client answering any prompt (log-probabilities, parsed answers)
    RATES = "rates"  # `rate`: FADE's 0/1/2 rating of texts for a description, without a prompt
    JUDGES = "judges"  # `judge`: yes/no per text for a description and a score per text (detection)
    PICKS_ODD_ONE_OUT = "picks_odd_one_out"  # `odd_ones_out`: the text least like the others (intruder)


class Rater(Protocol):
    """Who judges texts for FADE and the scorers (`fade.rater`).

    `capabilities` says what it can be asked (Capability); `label` names it where its numbers are shown (a
    proxy for an LLM judge says so). `usage` is what its LLM calls spent; `close` ends a stage's use of it
    (a registered rater is shared by the stages of a process: it keeps what it holds).
    """

    capabilities: ClassVar[frozenset[Capability]]
    label: str
    # Its settings' pydantic model, validated at load over its section of the config (`fade.rater_settings.<name>`)
    # and read with `harness.raters.rater_settings`; None: it has none (an LLM's are `fade.rater` itself).
    settings_model: ClassVar[type[BaseModel] | None] = None

    @staticmethod
    def label_for(fade: FadeConfig) -> str:
        """Its `label` under `fade`, known without building it (run params, `harness compare`, the leaderboard):
        the model string, unless the rater says more (a proxy for an LLM judge says so)."""
        return fade.rater.model

    def supports(self, capability: Capability) -> bool:
        """Whether the rater can be asked `capability`."""
        return capability in self.capabilities

    @property
    def usage(self) -> Usage:
        """No LLM calls: an empty usage, so callers count every rater alike."""
        return Usage()

    def close(self) -> None:
        """Nothing to release."""

    @property
    def chat(self) -> LLMClient:
        """Capability.PROMPTS: the chat client that answers prompts."""
        raise self._cannot(Capability.PROMPTS)

    def rate(self, description: str, texts: Sequence[str]) -> list[int]:
        """Capability.RATES: FADE's rating (0, 1 or 2) of each text for the description."""
        raise self._cannot(Capability.RATES)

    def judge(self, description: str, texts: Sequence[str]) -> tuple[list[bool], list[float]]:
        """Capability.JUDGES: whether each text shows the description, and a score per text (higher: more so)."""
        raise self._cannot(Capability.JUDGES)

    def odd_ones_out(self, groups: Sequence[Sequence[str]]) -> list[tuple[int, list[float]]]:
        """Capability.PICKS_ODD_ONE_OUT: per group of texts, the position of the one least like the others and
        a score per text (lower: less like the others)."""
        raise self._cannot(Capability.PICKS_ODD_ONE_OUT)

    def _cannot(self, capability: Capability) -> EvaluationError:
        return EvaluationError(
            f"fade.rater {self.label!r} cannot be asked {capability.value!r} (it supports "
            f"{sorted(capability.value for capability in self.capabilities)}); ask rater.supports(...) first"
        )


class RaterKind(Protocol):
    """What `harness.registry.RATERS` holds under a provider name of `fade.rater.model`: usually the rater
    class itself, built as `kind(fade, corpus_texts)`; subclassing `Rater` gives `settings_model` and
    `label_for` their defaults."""

    settings_model: type[BaseModel] | None

    def __call__(self, fade: FadeConfig, corpus_texts: Sequence[str]) -> Rater: ...

    def label_for(self, fade: FadeConfig) -> str:
        """The `label` the rater built under `fade` would have."""
        ...

    def identity(self, fade: FadeConfig) -> dict[str, Any]:
        """The settings that shape its answers, JSON-able: a part of what the run identity holds of `fade`
        (`fade.rater` and the rater's settings), so one rater serves every variant that agrees on it."""
        ...

    def check(self, fade: FadeConfig, cache_dir: str | Path) -> None:
        """Raise the HarnessError building the rater would raise, cheaply, before a run starts (pre-flight)."""
        ...
