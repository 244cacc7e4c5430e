"""What an explainer needs is its class attribute (needs_pools), and a plugin explainer's settings come from
`explain.settings.<name>`, checked at load and part of its settings hash."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config import StrictModel, parse_config
from harness.errors import ConfigError
from harness.explain import Description, Explainer, make_explainer, settings_hash
from harness.registry import EXPLAINERS
from harness.stages._describe import _needs_pool


class WordsSettings(StrictModel):
    word: str = "feature"


class WordExplainer(Explainer):
    """Describes every feature by one configured word; wants the activation pools."""

    needs_pools = True
    settings_model = WordsSettings

    def settings(self) -> dict[str, Any]:
        return self.given_settings.model_dump()

    def explain(self, records, client):
        return [Description(record.feature, self.given_settings.word) for record in records]


@pytest.fixture
def word_explainer(monkeypatch):
    monkeypatch.setattr(EXPLAINERS, "_targets", dict(EXPLAINERS._targets))
    monkeypatch.setattr(EXPLAINERS, "_names_by_target", dict(EXPLAINERS._names_by_target))
    EXPLAINERS.add("word", f"{__name__}:WordExplainer")


def _needs(explain: dict[str, Any]) -> bool:
    config = parse_config({"explain": explain})
    return _needs_pool(config, make_explainer(config.explain))


def test_the_explain_stage_draws_pools_for_an_explainer_that_declares_it_needs_them(word_explainer):
    stratified = {"selection": {"strategy": "stratified"}}
    assert _needs({"explainer": "word", **stratified})
    assert _needs({"explainer": "top-tokens", **stratified})
    assert not _needs({"explainer": "vocab-proj", **stratified})
    assert not _needs({"explainer": "word"})  # the top examples: no pools


def test_the_shuffled_control_draws_the_pools_its_base_reads(word_explainer):
    """Its base explainer must see the examples the variant it controls saw, or its descriptions differ."""
    stratified = {"selection": {"strategy": "stratified"}}
    assert _needs({"explainer": "shuffled", "shuffled": {"base": "word"}, **stratified})
    assert not _needs({"explainer": "shuffled", "shuffled": {"base": "vocab-proj"}, **stratified})


def test_a_plugin_explainers_settings_are_checked_at_load_and_enter_its_hash(word_explainer):
    plain = parse_config({"explain": {"explainer": "word"}})
    tuned = parse_config({"explain": {"explainer": "word", "settings": {"word": {"word": "python"}}}})
    assert make_explainer(tuned.explain).given_settings.word == "python"
    assert settings_hash(plain.explain) != settings_hash(tuned.explain)
    with pytest.raises(ConfigError, match=r"explain.settings.word.words: unknown key"):
        parse_config({"explain": {"explainer": "word", "settings": {"word": {"words": "python"}}}})
