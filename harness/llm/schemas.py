"""The shapes of the answers the harness asks LLMs for, as JSON schemas in litellm's `response_format`.

Every builder stays inside what OpenAI's strict structured outputs accept (an object at the root, every
property required, no other properties), so one schema works on every backend that takes schemas; the
tolerant parsers of harness.llm.parsing read the same answers when a backend ignores them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

# The prompt kinds whose answers are counted (Usage.answers / Usage.parsed); one per asking call site.
ANSWER_KINDS = (
    "fade_rating",
    "fade_generation",
    "detection",
    "fuzzing",
    "simulation",
    "intruder",
    "output_detection",
    "explainer",
)
SAMPLES_KEY = "samples"  # strict schemas need an object at the root, so a list of strings is wrapped in it
DESCRIPTION_KEY = "description"
# A description is a short phrase; the bound keeps a weak model from writing until max_tokens cuts the JSON.
DESCRIPTION_MAX_LENGTH = 200


def _response_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def ratings_format(kind: str, ids: Sequence[int], allowed: Collection[int]) -> dict[str, Any]:
    """An object that gives every asked id (as a string key, in the asked order) one of the allowed integers.

    Args:
        kind: the prompt kind, the schema's name.
        ids: the ids the prompt asks about.
        allowed: the valid values.
    """
    value = {"type": "integer", "enum": sorted(allowed)}
    return _response_format(kind, _object({str(item): value for item in ids}))


def choice_format(kind: str, key: str, allowed: Collection[int]) -> dict[str, Any]:
    """One choice among numbered options, as {key: number}: e.g. the intruder scorer's {"intruder": 3}."""
    return _response_format(kind, _object({key: {"type": "integer", "enum": sorted(allowed)}}))


def string_list_format(kind: str, max_items: int | None = None, max_length: int | None = None) -> dict[str, Any]:
    """A list of strings, as {"samples": [...]}: one to `max_items` non-empty strings of `max_length` characters.

    An empty list or string carries no sample (FADE deviation E3 drops them), so the schema allows neither.
    """
    items: dict[str, Any] = {"type": "string", "minLength": 1} | ({"maxLength": max_length} if max_length else {})
    array: dict[str, Any] = {"type": "array", "items": items, "minItems": 1}
    array |= {"maxItems": max_items} if max_items else {}
    return _response_format(kind, _object({SAMPLES_KEY: array}))


def description_format(kind: str = "explainer") -> dict[str, Any]:
    """One description, as {"description": "..."}, at most DESCRIPTION_MAX_LENGTH characters."""
    return _response_format(kind, _object({DESCRIPTION_KEY: {"type": "string", "maxLength": DESCRIPTION_MAX_LENGTH}}))


@dataclass(frozen=True)
class AnswerFormat:
    """What an answer should be: its prompt kind, the schema sent as `response_format` when the backend takes
    one (llm.structured_output), and the check that an answer is fully valid for what was asked (counted)."""

    kind: str
    response_format: dict[str, Any]
    parses: Callable[[str], bool]

    def __post_init__(self) -> None:
        if self.kind not in ANSWER_KINDS:
            raise ValueError(f"unknown answer kind {self.kind!r}; known: {', '.join(ANSWER_KINDS)}")
