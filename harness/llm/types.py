"""What one LLM call returns and what a run of calls used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

# One generated token: its text, and its most likely alternatives at that position (token text ->
# log-probability; the generated token is among them).
TokenLogprobs = tuple[str, Mapping[str, float]]


@dataclass(frozen=True)
class Completion:
    """One answered request.

    Token counts and cost are what this request spent now, summed over its attempts: an answer read
    from the cache spent nothing. `valid` is False only when a validator rejected every answer the
    backend gave within the re-ask budget; the last answer is returned anyway, never cached.
    `logprobs` holds one entry per generated token when the request asked for log-probabilities
    (`logprobs=True, top_logprobs=k`) and the backend gave them; None otherwise.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    model: str
    attempts: int = 1
    valid: bool = True
    logprobs: tuple[TokenLogprobs, ...] | None = None


@dataclass
class Usage:
    """Counts of a client's work; add two with `+` to merge runs.

    requests: completions asked for. calls: requests sent to the backend, retries included.
    cache_hits: requests answered from the cache. retries: calls beyond a request's first, for any
    reason. invalid_answers: answers a validator rejected (each one led to a re-ask or, when the
    budget was spent, to a Completion with valid=False). failures: requests that ended in LLMError.
    """

    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    invalid_answers: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(**{item.name: getattr(self, item.name) + getattr(other, item.name) for item in fields(self)})

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)
