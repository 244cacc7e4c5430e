"""Read a rater's {id: value} answer, and the expected value of each value from its token log-probabilities.

The written value is what the rater wrote: a JSON object {id: value} as the prompts ask (in a code fence,
after chatter, or cut off: harness.llm.parse_ratings salvages what is complete), or failing that a
bracketed list with one value per asked id, in order (delphi's format).

When the backend also returned log-probabilities (Completion.logprobs: per generated token, its text and
its top alternatives as token -> logprob; the scorers ask for them as `scorers.<name>.logprobs` says),
each value's expected value over the allowed values is read from the token that holds it, as Bills et
al. (2023) do for simulation and delphi does for P(1) in detection and fuzzing.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from harness.llm import AnswerFormat, Completion, TokenLogprobs, parse_ratings, ratings_format

_ID_VALUE = re.compile(r"""["']?(\d+)["']?\s*:\s*["']?(\d+)(?![\d.])""")
_VALUE_LIST = re.compile(r"\[([\d\s,]*)\]")
_TOKEN_PADDING = " \t\n\"':,{}"


@dataclass(frozen=True)
class RaterValues:
    """What a rater answered per id: the written values and, where log-probabilities allow, expected values."""

    written: dict[int, int] = field(default_factory=dict)
    expected: dict[int, float] = field(default_factory=dict)
    complete: bool = False


def read_values(text: str, expected_ids: Sequence[int], allowed: Collection[int]) -> tuple[dict[int, int], bool]:
    """The written values by id, and whether every asked id got a valid one; never raises.

    Args:
        text: the answer.
        expected_ids: the ids the prompt asked about, in prompt order; others are ignored.
        allowed: the valid values; others are dropped.
    """
    parsed = parse_ratings(text, expected_ids, allowed=allowed)
    if parsed.ratings or not isinstance(text, str):
        return parsed.ratings, parsed.ok
    for match in _VALUE_LIST.finditer(text):
        values = [int(item) for item in match.group(1).replace(",", " ").split()]
        if len(values) == len(expected_ids) and all(value in allowed for value in values):
            return dict(zip(expected_ids, values)), True
    return {}, False


def answers_every_id(expected_ids: Sequence[int], allowed: Collection[int]) -> Callable[[str], bool]:
    """A validator for the LLM layer: True when the answer gives every asked id a valid value."""
    ids = list(expected_ids)
    return lambda text: read_values(text, ids, allowed)[1]


def rater_answer(kind: str, expected_ids: Sequence[int], allowed: Collection[int]) -> AnswerFormat:
    """What a scorer asks the rater for: the JSON object {id: value} of its prompts, valid as `answers_every_id`."""
    ids = list(expected_ids)
    return AnswerFormat(kind, ratings_format(kind, ids, allowed), answers_every_id(ids, allowed))


def _as_value(token: str, allowed: Collection[int]) -> int | None:
    stripped = token.strip(_TOKEN_PADDING)
    if stripped.isdigit() and int(stripped) in allowed:
        return int(stripped)
    return None


def expected_values(
    tokens: Sequence[TokenLogprobs], expected_ids: Collection[int], allowed: Collection[int]
) -> dict[int, float]:
    """id -> expected value over `allowed`, for each `"id": value` pair of the answer written by `tokens`.

    The distribution is the top alternatives of the token that holds the value, renormalised over the
    alternatives that are allowed values. A value written over several tokens (e.g. "1", "0"), or whose
    token has no allowed alternative, is left out (the written value stands).
    """
    text = "".join(token for token, _ in tokens)
    starts = []
    offset = 0
    for token, _ in tokens:
        starts.append(offset)
        offset += len(token)
    expected: dict[int, float] = {}
    for match in _ID_VALUE.finditer(text):
        sequence_id = int(match.group(1))
        if sequence_id not in expected_ids or sequence_id in expected:
            continue
        start, end = match.span(2)
        index = bisect.bisect_right(starts, start) - 1
        token, alternatives = tokens[index]
        if starts[index] + len(token) < end or _as_value(token, allowed) is None:
            continue
        mass: dict[int, float] = {}
        for alternative, logprob in alternatives.items():
            value = _as_value(alternative, allowed)
            if value is not None and math.isfinite(logprob):
                mass[value] = mass.get(value, 0.0) + math.exp(logprob)
        total = sum(mass.values())
        if total > 0:
            expected[sequence_id] = sum(value * share for value, share in mass.items()) / total
    return expected


def rater_values(completion: Completion, expected_ids: Sequence[int], allowed: Collection[int]) -> RaterValues:
    """The values a rater's answer gives the asked ids; never raises (a bad answer gives no values).

    Args:
        completion: the LLM layer's Completion.
        expected_ids: the ids the prompt asked about, in prompt order; others are ignored.
        allowed: the valid values; others are dropped.
    """
    written, complete = read_values(completion.text, expected_ids, allowed)
    tokens = completion.logprobs
    expected = expected_values(tokens, set(expected_ids), set(allowed)) if tokens else {}
    return RaterValues(
        written=written,
        expected={key: value for key, value in expected.items() if key in written},
        complete=complete,
    )
