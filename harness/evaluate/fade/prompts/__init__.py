"""FADE's two prompts, verbatim from the reference (fade-language 0.1.2, default_config.yaml), as chat messages.

The texts are the method: the generation prompt asks for a Python list of sequences that express a
concept, the rating prompt for a dict {id: 0|1|2}. They are stored as the rater receives them: the
reference's template engine turns the rating example's `{{...}}` into `{...}`, so the file holds single
braces. The reference sends the query as the user message followed by a newline; so do we. With
structured output the generation prompt gets one sentence more (docs/fade-deviations.md E9).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.resources import files

from harness.llm.schemas import SAMPLES_KEY

GENERATION_PROMPT = files(__name__).joinpath("generation.txt").read_text(encoding="utf-8")
RATING_PROMPT = files(__name__).joinpath("rating.txt").read_text(encoding="utf-8")

# Deviation from the FADE reference: with structured output (llm.structured_output) the list is asked for
# inside an object, the shape of its JSON schema (strict schemas need an object at the root; E9).
GENERATION_IN_JSON_OBJECT = (
    f'Give the list as the value of "{SAMPLES_KEY}" in a JSON object: '
    f'{{"{SAMPLES_KEY}": ["First example sequence.", "Second example sequence."]}}\n'
)

Messages = list[dict[str, str]]


def generation_messages(concept: str, *, in_json_object: bool = False) -> Messages:
    """One clarity generation call: the user message is the concept itself.

    Args:
        concept: the description.
        in_json_object: the answer's schema is sent, so the prompt asks for the list in its object.
    """
    system = GENERATION_PROMPT + GENERATION_IN_JSON_OBJECT if in_json_object else GENERATION_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{concept}\n"}]


def rating_query(concept: str, sequences: Sequence[tuple[int, str]]) -> str:
    """The reference's rating query: the concept, then one `Sequence ID <k>: '<text>'` line per sequence."""
    lines = [f"Sequence ID {sequence_id}: '{text}'" for sequence_id, text in sequences]
    return "Concept: " + concept + "\n" + "\n".join(lines)


def rating_messages(concept: str, sequences: Sequence[tuple[int, str]]) -> Messages:
    """One rating call for a batch of (id, text) sequences."""
    return [
        {"role": "system", "content": RATING_PROMPT},
        {"role": "user", "content": rating_query(concept, sequences) + "\n"},
    ]
