"""Read LLM answers that should be a Python list of strings or a dict of sequence id -> rating.

Real answers come in code fences, after chatter ("Sure! Here is ..."), as JSON or as a Python literal,
and sometimes cut off mid-way. Both parsers first try a clean parse of the bracketed part; failing that
they salvage what is complete (ok=False). They never raise: a bad answer yields empty results.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_STRING_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'')
_RATING_PAIR = re.compile(
    r"""["']?(?:sequence\s+)?(?:id\s*)?(\d+)["']?\s*:\s*["']?(-?\d+(?:\.\d+)?)(?![\d.])["']?""", re.IGNORECASE
)
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")


@dataclass(frozen=True)
class ParsedList:
    """Strings read from an answer; `dropped` counts items that were not usable strings."""

    items: list[str] = field(default_factory=list)
    dropped: int = 0
    ok: bool = False


@dataclass(frozen=True)
class ParsedRatings:
    """Ratings by sequence id; `invalid` counts values outside `allowed`, `unexpected` ids not asked for."""

    ratings: dict[int, int] = field(default_factory=dict)
    invalid: int = 0
    unexpected: int = 0
    ok: bool = False


def _candidates(text: str, opener: str, closer: str) -> list[str]:
    """Bracketed spans worth a clean parse: inside code fences first, then the whole text."""
    sources = [match.group(1) for match in _FENCE.finditer(text)] + [text]
    spans = []
    for source in sources:
        start, end = source.find(opener), source.rfind(closer)
        if start != -1 and end > start:
            spans.append(source[start : end + 1])
    return spans


def _literal(span: str) -> object:
    """JSON or Python literal; None when neither reads it."""
    try:
        return json.loads(span)
    except ValueError:
        pass
    try:
        return ast.literal_eval(span)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _unwrap(value: object, kind: type) -> object:
    """{'results': [...]} and similar one-key wrappers around the expected container."""
    if isinstance(value, dict) and len(value) == 1:
        inner = next(iter(value.values()))
        if isinstance(inner, kind):
            return inner
    return value


def _body_start(text: str, opener: str) -> str:
    """The part of an answer from its first bracket on, preferring a code fence's content."""
    fenced = _FENCE.search(text)
    source = fenced.group(1) if fenced and opener in fenced.group(1) else text
    start = source.find(opener)
    return source[start:] if start != -1 else ""


def parse_string_list(text: str) -> ParsedList:
    """Read a list of strings from an LLM answer.

    A clean list (JSON or Python, possibly wrapped as {"key": [...]}) gives ok=True; non-string or empty
    items are dropped and counted. Otherwise the complete string literals after the first '[' are
    salvaged (a truncated answer), or failing that the lines of a bulleted/numbered list (ok=False).
    """
    if not isinstance(text, str):
        return ParsedList()
    for span in _candidates(text, "[", "]") + _candidates(text, "{", "}"):
        value = _unwrap(_literal(span), list)
        if isinstance(value, list):
            items = [item.strip() for item in value if isinstance(item, str) and item.strip()]
            return ParsedList(items=items, dropped=len(value) - len(items), ok=True)
    body = _body_start(text, "[")
    if body:
        return _salvage_strings(body)
    bullets = [match.group(1) for line in text.splitlines() if (match := _BULLET.match(line))]
    return ParsedList(items=[item.strip("\"'") for item in bullets if item.strip("\"'")])


def _salvage_strings(body: str) -> ParsedList:
    items: list[str] = []
    dropped = 0
    last_end = 0
    for match in _STRING_LITERAL.finditer(body):
        last_end = match.end()
        try:
            value = ast.literal_eval(match.group(0))
        except (ValueError, SyntaxError):
            dropped += 1
            continue
        if isinstance(value, str) and value.strip():
            items.append(value.strip())
        else:
            dropped += 1
    tail = body[last_end:].strip().lstrip(",").strip()
    if tail and not tail.startswith("]"):
        dropped += 1  # the item the answer was cut inside
    return ParsedList(items=items, dropped=dropped, ok=False)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:sequence\s+)?(?:id\s*)?(-?\d+)(?:\.0+)?\s*", value, re.IGNORECASE)
        if match:
            return int(match.group(1))
    return None


def parse_ratings(text: str, expected_ids: Iterable[int], allowed: Collection[int] = (0, 1, 2)) -> ParsedRatings:
    """Read a dict of sequence id -> rating from an LLM answer.

    Args:
        text: the answer.
        expected_ids: the ids the prompt asked about; other ids are ignored and counted as `unexpected`.
        allowed: the valid rating values; other values are dropped and counted as `invalid`.

    ok is True when the dict parsed cleanly and every expected id has a valid rating. A truncated or
    otherwise broken dict is salvaged pair by pair ("12": 2) with ok=False.
    """
    expected = set(expected_ids)
    allowed_values = set(allowed)
    if not isinstance(text, str):
        return ParsedRatings()
    for span in _candidates(text, "{", "}"):
        value = _unwrap(_literal(span), dict)
        if isinstance(value, dict):
            result = _collect(value.items(), expected, allowed_values)
            complete = expected <= result.ratings.keys() and result.invalid == 0
            return ParsedRatings(result.ratings, result.invalid, result.unexpected, ok=complete)
    body = _body_start(text, "{")
    pairs = [(match.group(1), match.group(2)) for match in _RATING_PAIR.finditer(body)] if body else []
    return _collect(pairs, expected, allowed_values)


def _collect(pairs: Iterable[tuple[object, object]], expected: set[int], allowed: set[int]) -> ParsedRatings:
    ratings: dict[int, int] = {}
    invalid = unexpected = 0
    for raw_id, raw_rating in pairs:
        sequence_id = _as_int(raw_id)
        if sequence_id is None or sequence_id not in expected:
            unexpected += 1
            continue
        rating = _as_int(raw_rating)
        if rating is None or rating not in allowed:
            invalid += 1
            continue
        ratings[sequence_id] = rating
    return ParsedRatings(ratings=ratings, invalid=invalid, unexpected=unexpected, ok=False)
