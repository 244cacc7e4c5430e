"""The explainer interface, its registry, and `generate_descriptions`, the stage's entry point."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pydantic import BaseModel

from harness.config import ExplainConfig, LLMConfig, identity_payload, plugin_settings
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

    A new explainer is a subclass in its own file, registered by a line in harness.registry.EXPLAINERS (or,
    from another package, by an entry point: docs/architecture.md, Plugins). What the pipeline must prepare
    for it are class attributes, read from the class, never decided by its name.
    """

    # Whether its records carry the activation pools (stratified or random examples, contrast examples) when
    # explain.selection asks for them; False: it reads the top examples only. Read from the instance (the
    # shuffled control needs what its base needs).
    needs_pools: bool = False
    # A plugin's settings (`explain.settings.<name>` in the config), validated at load; see `plugin_settings`.
    settings_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, config: ExplainConfig) -> None:
        self.config = config

    @property
    def given_settings(self) -> BaseModel:
        """A plugin explainer's settings: its `settings_model` over `explain.settings.<name>` (defaults where
        the config gives none). Put them in `settings()` so they are part of its settings hash."""
        name = EXPLAINERS.name_of(type(self))
        return plugin_settings(type(self), self.config.settings.get(name, {}), f"explain.settings.{name}")

    @property
    def needs_llm(self) -> bool:
        return False

    @property
    def needs_output_evidence(self) -> frozenset[str]:
        """The output evidence its records must carry ('vocab-proj', 'token-change'; `FeatureRecord.output`),
        computed by the explain stage for it; empty: none. A property, as it follows the settings (an ensemble
        reads what its members read)."""
        return frozenset()

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
