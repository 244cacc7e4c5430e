"""Raters: who judges whether a text shows a description, for FADE and the other scorers.

`fade.rater.model` picks one. A model string whose provider is registered in `harness.registry.RATERS`
(`embedding/<encoder>`) is a rater of that kind, built from the FADE settings and the natural corpus; any
other is an LLM judge (LLMRater, asked with each method's prompt). Every rater is a `Rater`: callers ask
what it supports (`Capability`), never which class it is. A new kind of rater is one small module
registering its class under its provider name, declaring its settings (`settings_model`, read with
`rater_settings`) and its label (`label_for`) on the class (docs/architecture.md, "A rater").
"""

from harness.raters._base import as_rater, build_rater, check_rater, rater_label, rater_settings, registered_kind
from harness.raters._embedding import EmbeddingRater
from harness.raters._llm import LLMRater
from harness.raters._protocol import Capability, Rater, RaterKind
from harness.registry import RATERS

__all__ = [
    "RATERS",
    "Capability",
    "EmbeddingRater",
    "LLMRater",
    "Rater",
    "RaterKind",
    "as_rater",
    "build_rater",
    "check_rater",
    "rater_label",
    "rater_settings",
    "registered_kind",
]
