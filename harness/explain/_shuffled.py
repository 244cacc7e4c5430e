"""`shuffled` null control: every feature gets another feature's description (a seeded derangement).

A metric that cannot tell these from the real descriptions measures nothing about the match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from harness.config import ExplainConfig
from harness.errors import EvaluationError
from harness.explain._explainer import Explainer
from harness.explain._records import FeatureRecord
from harness.explain._table import Description, descriptions_from_table, descriptions_table
from harness.registry import EXPLAINERS


def derangement(size: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of range(size) with no fixed point (needs size >= 2).

    Rejection sampling: about e draws on average, whatever the size.
    """
    if size < 2:
        raise EvaluationError(f"the shuffled control needs at least 2 described features, got {size}")
    rng = np.random.default_rng(seed)
    identity = np.arange(size)
    while True:
        permutation = rng.permutation(size)
        if not np.any(permutation == identity):
            return permutation


def shuffle_descriptions(descriptions: Sequence[Description], seed: int) -> list[Description]:
    """Descriptions moved to other features; each keeps its provenance (example ids, prompt hash, cost).

    Features without a description (failed ones) keep their error and take no part in the shuffle.
    """
    described = [index for index, item in enumerate(descriptions) if item.description is not None]
    shuffled = list(descriptions)
    for target, source in zip(described, derangement(len(described), seed)):
        shuffled[target] = replace(descriptions[described[source]], feature=descriptions[target].feature)
    return shuffled


def shuffle_table(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The shuffled control of any descriptions table (an explainer's or an import's).

    Source-specific columns (e.g. an import's published scores) belong to the original pairs and are dropped.
    """
    source = "|".join(sorted(set(table["explainer"]) | set(table["settings_hash"])))
    identity = hashlib.sha256(f"shuffled|{source}|{seed}".encode()).hexdigest()[:16]
    return descriptions_table(shuffle_descriptions(descriptions_from_table(table), seed), "shuffled", identity)


class ShuffledExplainer(Explainer):
    """Runs the base explainer named in `shuffled.base`, then deranges its descriptions."""

    def __init__(self, config: ExplainConfig) -> None:
        super().__init__(config)
        self.base = EXPLAINERS.get(config.shuffled.base)(config)
        self.needs_pools = self.base.needs_pools  # its base must see the examples the controlled variant saw

    @property
    def needs_llm(self) -> bool:
        return self.base.needs_llm

    @property
    def needs_output_evidence(self) -> frozenset[str]:
        return self.base.needs_output_evidence

    def settings(self) -> dict[str, Any]:
        shuffled = self.config.shuffled
        return {"base": shuffled.base, "base_settings": self.base.settings(), "seed": shuffled.seed}

    def explain(self, records: Sequence[FeatureRecord], client: Any) -> list[Description]:
        return shuffle_descriptions(self.base.explain(records, client), self.config.shuffled.seed)
