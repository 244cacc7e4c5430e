"""What one LLM call returns and what a run of calls used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from harness.llm.schemas import ANSWER_KINDS

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
    answers / parsed: per prompt kind (ANSWER_KINDS), the answers returned to a caller that said what it
    asked for (an AnswerFormat), and how many of them were fully valid for what was asked.
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
    answers: dict[str, int] = field(default_factory=dict)
    parsed: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        summed = {}
        for item in fields(self):
            mine, theirs = getattr(self, item.name), getattr(other, item.name)
            if isinstance(mine, dict):
                kinds = mine.keys() | theirs.keys()
                summed[item.name] = {kind: mine.get(kind, 0) + theirs.get(kind, 0) for kind in kinds}
            else:
                summed[item.name] = mine + theirs
        return Usage(**summed)

    def as_dict(self) -> dict[str, int | float]:
        """Flat counts (tracking sums and logs them): `answers_<kind>` and `parsed_<kind>` for every kind."""
        flat: dict[str, int | float] = {
            item.name: getattr(self, item.name) for item in fields(self) if item.name not in ("answers", "parsed")
        }
        for kind in ANSWER_KINDS:
            flat[f"answers_{kind}"] = self.answers.get(kind, 0)
            flat[f"parsed_{kind}"] = self.parsed.get(kind, 0)
        return flat


def parse_metrics(counts: Mapping[str, int | float]) -> dict[str, float]:
    """`answers_<kind>` and `parse_rate_<kind>` (the share of them fully valid) from Usage.as_dict() counts,
    for the kinds that got answers: a rate of no answers would be a made-up number."""
    metrics = {}
    for kind in ANSWER_KINDS:
        answers = float(counts.get(f"answers_{kind}", 0) or 0)
        if answers:
            metrics[f"answers_{kind}"] = answers
            metrics[f"parse_rate_{kind}"] = float(counts.get(f"parsed_{kind}", 0) or 0) / answers
    return metrics
