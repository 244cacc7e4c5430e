import re

import pytest

from harness.config import ExplainConfig
from harness.errors import ConfigError
from harness.explain import (
    FeatureRecord,
    build_prompt,
    choose_description,
    load_template,
    make_explainer,
    parse_description,
    select_examples,
)


def config(**sections) -> ExplainConfig:
    return ExplainConfig.model_validate(sections)


def user_text(prompt) -> str:
    return next(message["content"] for message in prompt.messages if message["role"] == "user")


@pytest.mark.parametrize("count", [1, 5, 12])
def test_highlight_prompt_shows_exactly_the_selected_examples(make_planted_record, count):
    record = make_planted_record(3, "zebra")
    settings = config(selection={"num_examples": count}, prompt={"template": "delphi"})
    prompt = build_prompt(record, settings, load_template("delphi"))
    text = user_text(prompt)
    assert re.findall(r"^Example (\d+): ", text, re.MULTILINE) == [str(i) for i in range(1, count + 1)]
    # each shown example is one of the top ones, in order, with only the planted token highlighted
    assert re.findall(r"<<(.+?)>>", text) == ["zebra"] * count
    assert list(prompt.example_ids) == [example.sample_id for example in record.top_examples[:count]]
    for example in record.top_examples[:count]:
        plain = "".join(example.tokens).replace(" zebra", " <<zebra>>")
        assert plain in text
    system = prompt.messages[0]["content"]
    assert prompt.messages[0]["role"] == "system" and "marked span is closed by" in system


def test_values_prompt_lists_tokens_with_values_from_zero_to_ten(make_planted_record):
    record = make_planted_record(4, "zebra")
    settings = config(
        selection={"num_examples": 3}, display={"mode": "values"}, prompt={"template": "neuron-explainer"}
    )
    text = user_text(build_prompt(record, settings, load_template("neuron-explainer")))
    assert text.count("<start>") == 3 and text.count("<end>") == 3
    assert "on 3 documents" in text
    zebra_values = [int(value) for value in re.findall(r"^ zebra\t(\d+)$", text, re.MULTILINE)]
    # activations 10, 9.5, 9 of a feature whose max is 10
    assert zebra_values == [10, 10, 9]
    assert set(re.findall(r"^ cat\t(\d+)$", text, re.MULTILINE)) == {"0"}


def test_contrast_prompt_shows_low_examples_apart(make_planted_record):
    record = make_planted_record(5, "zebra")
    settings = config(selection={"num_examples": 4, "contrast_examples": 3}, prompt={"template": "contrast"})
    prompt = build_prompt(record, settings, load_template("contrast"))
    text = user_text(prompt)
    assert re.findall(r"^Contrast example (\d+): ", text, re.MULTILINE) == ["1", "2", "3"]
    contrast_part = text.split("Contrast examples where", 1)[1]
    assert "<<" not in contrast_part and "(3)" in contrast_part
    expected = select_examples(record, settings.selection)
    assert list(prompt.example_ids) == expected.sample_ids and len(prompt.example_ids) == 7


def test_context_window_cuts_the_shown_text(make_planted_record):
    record = make_planted_record(6, "zebra")
    settings = config(selection={"num_examples": 2, "context_left": 1, "context_right": 0})
    text = user_text(build_prompt(record, settings, load_template("delphi")))
    lines = re.findall(r"^Example \d+: (.*)$", text, re.MULTILINE)
    assert all(line.endswith("<<zebra>>") for line in lines)
    assert all(len(re.findall(r"\S+", line)) == 2 for line in lines)


def test_template_and_contrast_setting_must_agree():
    with pytest.raises(ConfigError, match="no \\{contrast_examples\\} placeholder"):
        make_explainer(config(selection={"contrast_examples": 2}, prompt={"template": "delphi"}))
    with pytest.raises(ConfigError, match="contrast_examples is 0"):
        make_explainer(config(prompt={"template": "contrast"}))


def test_a_feature_without_active_examples_gets_no_prompt(make_example):
    record = FeatureRecord(feature=1, top_examples=(make_example(1, ["a"], [0.0]),))
    assert build_prompt(record, ExplainConfig(), load_template("delphi")) is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Reasoning first.\n[EXPLANATION]: mentions of zebras\n", "mentions of zebras"),
        ("[DESCRIPTION]: 'first' \nthen [description]:   the word \"zebra\"  ", 'the word "zebra"'),
        ("Description: **dates in  ISO   format**\nmore text", "dates in ISO format"),
        ('the token "zebra"', 'the token "zebra"'),
        ('"quoted whole answer"', "quoted whole answer"),
        ("[EXPLANATION]:", ""),
        ("   ", ""),
        ("__import__('os').system('x')", "__import__('os').system('x')"),
        ('{"description": "the token \\"zebra\\""}', 'the token "zebra"'),  # the schema's object
        ('{"description": "[EXPLANATION]: zebras"}', "zebras"),
        ('{"description": "mentions of zeb', "mentions of zeb"),  # cut by max_tokens
    ],
)
def test_parse_description_keeps_answers_as_plain_text(answer, expected):
    assert parse_description(answer) == expected


def test_choose_description_rules():
    candidates = ["Zebra stripes.", "", "cats", "zebra   STRIPES", "dogs"]
    assert choose_description(candidates, "first") == "Zebra stripes."
    assert choose_description(candidates, "shortest") == "cats"
    assert choose_description(candidates, "most-common") == "Zebra stripes."
    assert choose_description(["a", "b", "b"], "most-common") == "b"
    assert choose_description(["", ""], "first") is None
    with pytest.raises(ValueError, match="unknown choice rule"):
        choose_description(["a"], "longest")


def test_a_description_is_cut_to_the_documented_200_characters_on_the_way_in():
    """A backend that ignores the schema's maxLength does not make a 10 MB description (issue #30)."""
    assert parse_description("word " * 2_000_000) == ("word " * 40)[:200].rstrip()
    assert len(parse_description('{"description": "' + "y" * 5000 + '"}')) == 200
