"""The generation and rating prompts are the reference's texts, as its template engine sends them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from needs import missing

from harness.evaluate.fade._metrics import VALID_RATINGS
from harness.evaluate.fade.prompts import (
    GENERATION_IN_JSON_OBJECT,
    GENERATION_PROMPT,
    RATING_PROMPT,
    generation_messages,
    rating_messages,
)
from harness.llm import ratings_format, string_list_format


@pytest.fixture(scope="module")
def reference_prompts() -> dict[str, str]:
    # Located without importing the package (its __init__ pulls in langchain and torch).
    spec = importlib.util.find_spec("fade")
    if spec is None or not spec.submodule_search_locations:
        missing("the FADE reference (pip install fade-language==0.1.2) is not installed")
    config = Path(next(iter(spec.submodule_search_locations))) / "default_config.yaml"
    return yaml.safe_load(config.read_text(encoding="utf-8"))["prompts"]


def test_generation_prompt_is_the_reference_text(reference_prompts):
    assert GENERATION_PROMPT == reference_prompts["generation"]


def test_rating_prompt_is_the_reference_text_as_sent(reference_prompts):
    # The reference's ChatPromptTemplate formats the system text: its example's {{ }} reach the rater as { }.
    assert RATING_PROMPT == reference_prompts["rating"].replace("{{", "{").replace("}}", "}")
    assert '{"14": 0, "15": 2, "20": 1, "27": 0}' in RATING_PROMPT


def test_user_messages_are_the_reference_query_plus_newline():
    assert generation_messages("Irony") == [
        {"role": "system", "content": GENERATION_PROMPT},
        {"role": "user", "content": "Irony\n"},
    ]
    assert rating_messages("Irony", [(3, "Oh, great.")])[1] == {
        "role": "user",
        "content": "Concept: Irony\nSequence ID 3: 'Oh, great.'\n",
    }


def valid(instance: object, response_format: dict) -> bool:
    schema = response_format["json_schema"]["schema"]
    return jsonschema.validators.validator_for(schema)(schema).is_valid(instance)


def test_the_prompts_examples_are_what_their_schemas_allow():
    """With structured output the rating prompt is unchanged: its example output already fits the schema;
    the generation prompt gets one sentence more, whose example fits the list's schema (deviation E9)."""
    example = json.loads(re.search(r"Example Output: (\{.*\})", RATING_PROMPT).group(1))
    assert valid(example, ratings_format("fade_rating", [14, 15, 20, 27], VALID_RATINGS))
    assert generation_messages("Irony", in_json_object=True) == [
        {"role": "system", "content": GENERATION_PROMPT + GENERATION_IN_JSON_OBJECT},
        {"role": "user", "content": "Irony\n"},
    ]
    wrapped = json.loads(GENERATION_IN_JSON_OBJECT[GENERATION_IN_JSON_OBJECT.index("{") :])
    assert valid(wrapped, string_list_format("fade_generation"))
