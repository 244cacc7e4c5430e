"""The LLM judge as a rater: an LLMClient for `fade.rater`, answering FADE's and the scorers' prompts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from harness.config import FadeConfig
from harness.llm import LLMClient, Usage
from harness.raters._protocol import Capability, Rater

if TYPE_CHECKING:
    from harness.llm import UsageLedger
    from harness.llm.tracing import CallTracer


class LLMRater(Rater):
    """An LLM rater: every question is a prompt to its chat client (which asks for log-probabilities and
    parses answers as each caller says).

    Args:
        client: the client of `fade.rater`.
        ledger: where the client also appends what it spends (a tracked run's stage ledger).
        tracer: records every call as an MLflow trace of the tracked run.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.PROMPTS})

    def __init__(self, client: LLMClient, ledger: UsageLedger | None = None, tracer: CallTracer | None = None) -> None:
        self._client = client
        self.label = client.config.model
        if ledger is not None:
            client.ledger = ledger
        if tracer is not None:
            client.tracer = tracer

    @property
    def chat(self) -> LLMClient:
        return self._client

    @property
    def usage(self) -> Usage:
        return self._client.usage

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def check(fade: FadeConfig, cache_dir: str | Path) -> None:
        """The model string is one litellm knows and the response cache opens."""
        LLMClient(fade.rater, cache_dir, progress=False).close()
