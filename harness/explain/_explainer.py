"""The explainer interface, its registry, and `generate_descriptions`, the stage's entry point."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.config import ExplainConfig, LLMConfig, identity_payload
from harness.errors import ConfigError, EvaluationError
from harness.explain._records import FeatureRecord
from harness.explain._table import Description, descriptions_table
from harness.files import identity_hash
from harness.registry import EXPLAINERS

if TYPE_CHECKING:
    from harness.llm.client import LLMClient


def llm_settings(llm: LLMConfig) -> dict[str, Any]:
    """The LLM settings that shape the answers (model, backend_id, sampling, extra parameters): its identity."""
    return identity_payload(llm)


class Explainer(ABC):
    """Turns feature records into descriptions; one instance is one pipeline variant.

    A new explainer is a subclass in its own file, registered by a line in harness.registry.EXPLAINERS.
    """

    def __init__(self, config: ExplainConfig) -> None:
        self.config = config

    @property
    def needs_llm(self) -> bool:
        return False

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Every setting that shapes the descriptions (JSON-able); hashed into the variant's identity."""

    def settings_hash(self) -> str:
        """Identity of the variant: a hash of its explainer's name and settings (same settings, same hash)."""
        return identity_hash({"explainer": self.config.explainer, "settings": self.settings()})[:16]

    @abstractmethod
    def explain(self, records: Sequence[FeatureRecord], client: LLMClient | None) -> list[Description]:
        """One Description per record, in record order; a failed feature is a Description with `error`."""


def make_explainer(config: ExplainConfig) -> Explainer:
    """The explainer named by `config.explainer`, set up with `config`."""
    return EXPLAINERS.get(config.explainer)(config)


def settings_hash(config: ExplainConfig) -> str:
    """Identity of a pipeline variant (see Explainer.settings_hash)."""
    return make_explainer(config).settings_hash()


def generate_descriptions(
    records: Sequence[FeatureRecord], explain_config: ExplainConfig, client: LLMClient | None = None
) -> pd.DataFrame:
    """The descriptions table of `records` under one pipeline variant.

    LLM explainers send every feature's prompts in one concurrent batch through `client`, whose cache
    answers a repeated run without calling the model.

    Args:
        records: one per feature (feature ids unique).
        explain_config: the variant: explainer name and its settings.
        client: the LLM client, made from `explain_config.llm`; only LLM explainers need one.
    """
    repeated = [feature for feature, count in Counter(r.feature for r in records).items() if count > 1]
    if repeated:
        raise EvaluationError(f"the feature records hold features {repeated[:10]} more than once; give one each")
    explainer = make_explainer(explain_config)
    if explainer.needs_llm and client is not None and llm_settings(client.config) != llm_settings(explain_config.llm):
        raise ConfigError(
            f"the LLM client's settings ({llm_settings(client.config)}) differ from explain.llm "
            f"({llm_settings(explain_config.llm)}); make the client from explain.llm so the record is true"
        )
    descriptions = explainer.explain(records, client)
    return descriptions_table(descriptions, explain_config.explainer, explainer.settings_hash())
