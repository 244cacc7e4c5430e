import pytest

from harness.errors import ConfigError
from harness.explain import PLACEHOLDERS, builtin_template_names, load_template


def test_the_builtin_templates_load_and_show_the_examples_or_the_output_evidence():
    assert {"plain", "neuron-explainer", "delphi", "contrast", "vocab-proj", "token-change", "ensemble"} <= set(
        builtin_template_names()
    )
    output_centric = {"vocab-proj", "token-change"}
    for name in builtin_template_names():
        template = load_template(name)
        assert template.source == "built-in" and template.placeholders <= PLACEHOLDERS.keys()
        assert ("examples" in template.placeholders) == (name not in output_centric), name
        assert ("output_evidence" in template.placeholders) == (name in output_centric | {"ensemble"}), name
    assert "contrast_examples" in load_template("contrast").placeholders


def test_a_template_showing_no_evidence_is_refused(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("Describe the feature in {num_examples} words.\n")
    with pytest.raises(ConfigError, match=r"shows no evidence.*\{examples\}.*\{output_evidence\}"):
        load_template(str(path))


def test_a_user_template_file_is_split_into_system_and_user_messages(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("### SYSTEM\nYou explain {{features}}.\n### USER\nShown {num_examples}:\n{examples}\n")
    template = load_template(str(path))
    assert template.name == "mine" and template.source == str(path)
    messages = template.render({"examples": "E1\nE2", "num_examples": "2"})
    assert messages == [
        {"role": "system", "content": "You explain {features}."},
        {"role": "user", "content": "Shown 2:\nE1\nE2"},
    ]


def test_values_containing_braces_are_inserted_verbatim(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Look: {examples} ({num_examples})")
    template = load_template(str(path))
    messages = template.render({"examples": "f(x) = {y} }{", "num_examples": "2"})
    assert messages == [{"role": "user", "content": "Look: f(x) = {y} }{ (2)"}]


def test_unknown_placeholder_names_the_file_the_placeholder_and_the_known_ones(tmp_path):
    path = tmp_path / "typo.txt"
    path.write_text("### USER\n{examples}\n{num_exmples}\n")
    with pytest.raises(ConfigError) as caught:
        load_template(str(path))
    message = str(caught.value)
    assert str(path) in message and "{num_exmples}" in message
    assert all("{" + name + "}" in message for name in PLACEHOLDERS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no examples here {num_examples}", "add the placeholder {examples}"),
        ("{examples} and a stray { brace", "literal braces"),
        ("{examples!r}", "takes no format or conversion"),
        ("{examples.__class__}", "unknown placeholder"),
        ("{0} {examples}", "unknown placeholder {0}"),
        ("### USER\n{examples}\n### USER\nagain", "appears twice"),
        ("### SYSTEM\nonly a system message {examples}", "user message is empty"),
        ("preface\n### USER\n{examples}", "text before the first"),
    ],
)
def test_malformed_templates_are_rejected_at_load_time(tmp_path, text, expected):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.txt") as caught:
        load_template(str(path))
    assert expected in str(caught.value)


def test_unknown_template_name_lists_the_builtins():
    with pytest.raises(ConfigError, match="delphi") as caught:
        load_template("delfi")
    assert "neither a built-in template" in str(caught.value)


def test_editing_a_template_file_changes_its_hash(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("A {examples}")
    before = load_template(str(path)).text_hash
    assert load_template(str(path)).text_hash == before
    path.write_text("B {examples}")
    assert load_template(str(path)).text_hash != before
