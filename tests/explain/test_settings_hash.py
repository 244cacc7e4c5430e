"""A variant's identity: every setting that shapes the descriptions is in its hash, nothing else is."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

from harness.config import ExplainConfig, LLMConfig, operational_fields
from harness.explain import settings_hash


def changed_value(section: BaseModel, name: str, special: dict[str, object]):
    """A valid value different from the current one, derived from the field's type."""
    if name in special:
        return special[name]
    value = getattr(section, name)
    annotation = type(section).model_fields[name].annotation
    if typing.get_origin(annotation) is typing.Literal:
        return next(option for option in typing.get_args(annotation) if option != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 + 0.1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, dict):
        return {"top_p": 0.5}
    assert value is None, f"no rule for {name}={value!r}"
    options = typing.get_args(annotation)
    if float in options or int in options:
        return 0.001 if float in options else 3
    return "OTHER_KEY_VARIABLE" if name.endswith("_env") else "http://127.0.0.1:1/v1"  # a variable name, a URL


def variations(base: dict, sections: list[str], special: dict[str, object]):
    """(dotted name, config) for each field of `sections` changed alone."""
    config = ExplainConfig.model_validate(base)
    for section_name in sections:
        section = getattr(config, section_name)
        for name in type(section).model_fields:
            data = config.model_dump(mode="json")
            data[section_name][name] = changed_value(section, name, special)
            yield f"{section_name}.{name}", ExplainConfig.model_validate(data)


@pytest.fixture
def contrast_template(tmp_path):
    path = tmp_path / "other.txt"
    path.write_text("### USER\n{examples}\nversus\n{contrast_examples}\n")
    return str(path)


def test_same_settings_give_the_same_hash():
    data = {"explainer": "llm", "selection": {"num_examples": 20}, "llm": {"temperature": 0.7}}
    assert settings_hash(ExplainConfig.model_validate(data)) == settings_hash(ExplainConfig.model_validate(data))
    assert len(settings_hash(ExplainConfig())) == 16


def test_every_llm_explainer_setting_changes_the_hash(contrast_template):
    base = {"explainer": "llm", "prompt": {"template": "contrast"}, "selection": {"contrast_examples": 2}}
    reference = settings_hash(ExplainConfig.model_validate(base))
    special = {"template": contrast_template, "contrast_examples": 3, "model": "openai/another-model"}
    hashes = {}
    for name, config in variations(base, ["llm", "prompt", "selection", "display"], special):
        field = name.split(".", 1)[1]
        if name.startswith("llm.") and field in operational_fields(LLMConfig):
            assert settings_hash(config) == reference, f"{name} only changes how calls are made"
        else:
            assert settings_hash(config) != reference, f"changing {name} must change the hash"
            hashes[name] = settings_hash(config)
    assert len(set(hashes.values())) == len(hashes)
    assert "llm.temperature" in hashes and "prompt.num_candidates" in hashes and "selection.context_left" in hashes


def test_sections_other_explainers_read_do_not_change_the_llm_hash():
    base = {"explainer": "llm"}
    reference = settings_hash(ExplainConfig.model_validate(base))
    for _, config in variations(base, ["top_tokens", "shuffled"], {"base": "llm"}):
        assert settings_hash(config) == reference


def test_every_top_tokens_setting_changes_its_hash_and_the_llm_does_not_matter():
    base = {"explainer": "top-tokens"}
    reference = settings_hash(ExplainConfig.model_validate(base))
    for name, config in variations(base, ["selection", "top_tokens"], {}):
        assert settings_hash(config) != reference, name
    for _, config in variations(base, ["llm", "display", "prompt"], {"template": "plain"}):
        assert settings_hash(config) == reference


def test_the_shuffled_control_hash_covers_its_seed_and_its_base():
    base = {"explainer": "shuffled", "shuffled": {"base": "top-tokens"}}
    reference = settings_hash(ExplainConfig.model_validate(base))
    for name, config in variations(base, ["shuffled", "selection", "top_tokens"], {"base": "llm"}):
        assert settings_hash(config) != reference, name
    top_tokens = settings_hash(ExplainConfig.model_validate({"explainer": "top-tokens"}))
    assert reference != top_tokens


def test_editing_a_user_template_file_changes_the_hash(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("Explain: {examples}")
    config = ExplainConfig.model_validate({"prompt": {"template": str(path)}})
    before = settings_hash(config)
    path.write_text("Describe: {examples}")
    assert settings_hash(config) != before
