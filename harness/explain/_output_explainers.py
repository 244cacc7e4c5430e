"""`vocab-proj` and `token-change`: output-centric explainers (Gur-Arieh et al. 2025). The LLM explainer with a
prompt of the tokens a feature promotes and suppresses in the output instead of its activating examples: the
tokens its output direction projects onto (VocabProj), or those whose logits move most when it is clamped on
text (TokenChange). docs/explainers.md has the formulae and choices.
"""

from __future__ import annotations

from typing import ClassVar

from harness.explain._llm_explainer import LLMExplainer


class OutputExplainer(LLMExplainer):
    """The LLM explainer on one kind of output evidence, with the built-in template named like it."""

    needs_pools = False
    evidence: ClassVar[str]

    @property
    def template_name(self) -> str:
        return self.evidence

    @property
    def output_kinds(self) -> tuple[str, ...]:
        return (self.evidence,)


class VocabProjExplainer(OutputExplainer):
    """Describes a feature from the top and bottom tokens of its output direction's vocabulary projection."""

    evidence = "vocab-proj"


class TokenChangeExplainer(OutputExplainer):
    """Describes a feature from the tokens whose mean logits change most when it is clamped high and low."""

    evidence = "token-change"
