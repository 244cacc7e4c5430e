"""LLM calls of one feature: through the shared clients (their concurrency bound, retries and cache), counted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import LLMError
from harness.raters import Capability, Rater, as_rater

if TYPE_CHECKING:
    from harness.llm import Completion, LLMClient


@dataclass
class RaterBackend:
    """What every feature of a run shares: the LLM that writes synthetic samples, the rater (an LLM rater,
    maybe on the same client, or a registered rater such as the embedding rater; an LLM client is taken as
    an LLM rater), and whether an LLM has answered at all yet."""

    generator: LLMClient
    rater: Rater
    answered: bool = False

    def __post_init__(self) -> None:
        self.rater = as_rater(self.rater)

    @property
    def judge(self) -> Rater | None:
        """The rater when it rates texts itself, without prompts (Capability.RATES), else None."""
        return self.rater if self.rater.supports(Capability.RATES) else None


@dataclass
class FeatureCalls:
    """The shared backend seen by one feature; counts what this feature asked.

    `requests` counts every LLM call FADE makes (answered from the cache or not), so it compares with the
    reference's call count; `failures` are calls that ended in LLMError after the client's retries,
    `failed_purposes` the scores that asked them and `first_error` the first one's message: a score whose
    calls failed is no result (Reason.LLM_FAILED), whatever the answers that did come say.
    `feature` and `purpose` (the score asking: clarity, responsiveness, faithfulness) go with each call to
    its trace (harness.llm.tracing); `for_purpose` gives a view that counts into this one.
    """

    backend: RaterBackend
    feature: int | None = None
    purpose: str | None = None
    requests: int = 0
    failures: int = 0
    failed_purposes: set[str | None] = field(default_factory=set)
    first_error: str | None = None
    _counts: FeatureCalls | None = field(default=None, repr=False)

    def for_purpose(self, purpose: str) -> FeatureCalls:
        """The same feature's calls, their traces saying which score asked; counted here."""
        return FeatureCalls(self.backend, self.feature, purpose, _counts=self._counts or self)

    @property
    def writer_sends_response_format(self) -> bool:
        """Whether answer schemas reach the generator (its prompts then describe the schema's shape)."""
        return self.backend.generator.sends_response_format

    async def complete(self, messages: list[dict[str, str]], **params: Any) -> Completion | None:
        """The LLM rater's answer, or None when the call failed for good (FADE then treats it as unparsable).

        Raises:
            LLMError: no LLM has answered a single call of this run (see `_ask`).
        """
        rater = self.backend.rater
        if not rater.supports(Capability.PROMPTS):
            raise LLMError(f"fade.rater {rater.label!r} answers no prompts; rate through rate_sequences")
        return await self._ask(rater.chat, messages, params)

    async def write(self, messages: list[dict[str, str]], **params: Any) -> Completion | None:
        """The generator's answer (Clarity's synthetic samples), or None when the call failed for good."""
        return await self._ask(self.backend.generator, messages, params)

    async def _ask(
        self, client: LLMClient, messages: list[dict[str, str]], params: dict[str, Any]
    ) -> Completion | None:
        """Raises LLMError when the backend has not answered a single call of this run: a wrong key, model
        or address would otherwise turn every score into "undefined" after a long run."""
        counts = self._counts or self
        counts.requests += 1
        context = {"feature": self.feature, "purpose": self.purpose}
        try:
            completion = await client.acomplete(messages, trace_context=context, **params)
        except LLMError as error:
            counts.failures += 1
            counts.failed_purposes.add(self.purpose)
            counts.first_error = counts.first_error or str(error)
            # Deviation from the FADE reference: it turns every failed call into a missing answer; a
            # backend that has never answered is a configuration error here, and stops the run.
            if not self.backend.answered:
                raise
            return None
        self.backend.answered = True
        return completion
