"""LLM calls of one feature: through the shared client (its concurrency bound, retries and cache), counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import LLMError
from harness.llm import Completion, LLMClient


@dataclass
class RaterBackend:
    """The client shared by every feature of a run, and whether the backend has answered at all yet."""

    client: LLMClient
    answered: bool = False


@dataclass
class FeatureCalls:
    """The shared backend seen by one feature; counts what this feature asked.

    `requests` counts every call FADE makes (answered from the cache or not), so it compares with the
    reference's call count; `failures` are calls that ended in LLMError after the client's retries.
    """

    backend: RaterBackend
    requests: int = 0
    failures: int = 0

    @property
    def sends_response_format(self) -> bool:
        """Whether answer schemas reach the rater (its prompts then describe the schema's shape)."""
        return self.backend.client.sends_response_format

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion | None:
        """The answer, or None when the call failed for good (FADE then treats it as unparsable).

        Raises:
            LLMError: the backend has not answered a single call of this run: a wrong key, model or
                address would otherwise turn every score into "undefined" after a long run.
        """
        self.requests += 1
        try:
            completion = await self.backend.client.acomplete(messages, **params)
        except LLMError:
            self.failures += 1
            # Deviation from the FADE reference: it turns every failed call into a missing answer; a
            # backend that has never answered is a configuration error here, and stops the run.
            if not self.backend.answered:
                raise
            return None
        self.backend.answered = True
        return completion
