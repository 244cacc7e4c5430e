"""FADE-style prompts with known answers under the loopback server's FadeResponder."""

from __future__ import annotations

import functools

from harness.llm import parse_ratings
from harness.testing.responders import GENERATION_MARKER, RATING_MARKER

KEY_ENV = "HARNESS_TEST_LLM_KEY"
RATING_SYSTEM = (
    "You are tasked with building a database of sequences that best represent a specific concept. "
    f"To create this, you will review a dataset of varying sequences and {RATING_MARKER}. "
    "Provide your ratings as a Python dictionary with sequence IDs as keys and their ratings as values."
)
GENERATION_SYSTEM = (
    "You are tasked with building a database of sequences that best represent a specific concept. "
    f"To create this, you will {GENERATION_MARKER} that vary in style, tone, context, length, and structure. "
    "Provide your sequences as strings in a Python List format."
)
CONCEPT = 'the word "cat"'
WORDS = ["cat", "dog", "tree", "car", "house"]


def rating_messages(ids: list[int], concept: str = CONCEPT) -> list[dict[str, str]]:
    """A FADE rating call; sequence k mentions WORDS[k % 5], so under CONCEPT ids divisible by 5 rate 2."""
    lines = [f"Sequence ID {k}: 'my {WORDS[k % len(WORDS)]} number {k} is here'" for k in ids]
    return [
        {"role": "system", "content": RATING_SYSTEM},
        {"role": "user", "content": f"Concept: {concept}\n" + "\n".join(lines)},
    ]


def expected_rating(sequence_id: int) -> int:
    return 2 if sequence_id % len(WORDS) == 0 else 0


def rating_batches(calls: int, per_call: int = 3) -> list[list[int]]:
    return [list(range(call * per_call, (call + 1) * per_call)) for call in range(calls)]


def _ratings_complete(text: str, ids: list[int]) -> bool:
    return parse_ratings(text, ids).ok


def rating_validators(batches: list[list[int]]) -> list:
    """One validator per call: the answer must rate every id it was asked about."""
    return [functools.partial(_ratings_complete, ids=ids) for ids in batches]
