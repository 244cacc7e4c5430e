"""Raters: who judges whether a text shows a description, for FADE and the other scorers.

`fade.rater.model` picks one. A litellm model string is an LLM judge (harness.llm.LLMClient, asked with
each method's prompt); a model string whose provider is registered here (`embedding/<encoder>`) is a
rater of that kind, built from the FADE settings and the natural corpus. A new kind of rater is one small
module registering a factory under its provider name.
"""

from harness.raters._base import RATERS, Rater, build_rater
from harness.raters._embedding import EmbeddingRater

__all__ = ["RATERS", "EmbeddingRater", "Rater", "build_rater"]
