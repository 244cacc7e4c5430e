"""Embedding (Paulo et al. 2024, delphi): is the description closer to activating than to non-activating text?

The description and each example's text are embedded with a sentence-embedding model (default
all-MiniLM-L6-v2); the cosine similarity of each example to the description is a detector of activating
examples. Main value: its AUROC. Cheap: no LLM, one encoder pass over every text of every feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from harness.config import EmbeddingConfig
from harness.evaluate.scorers._base import FeatureScore, Scorer
from harness.evaluate.scorers._examples import LabelledExample, examples_or_reason
from harness.evaluate.scorers._metrics import similarity_auroc
from harness.explain import FeatureRecord
from harness.model import load_encoder
from harness.score_names import Reason

if TYPE_CHECKING:
    from harness.raters import Rater


class EmbeddingScorer(Scorer):
    needs_llm = False
    extra_columns = ("similarity_gap", "examples")

    def prepare(
        self, record: FeatureRecord, description: str, settings: EmbeddingConfig
    ) -> tuple[str, list[LabelledExample]] | Reason:
        """The description and the labelled examples, when both kinds are there."""
        labelled = examples_or_reason(record, settings, need_non_activating=True)
        return labelled if isinstance(labelled, Reason) else (description, labelled)

    def evaluate(
        self,
        prepared: Mapping[int, tuple[str, list[LabelledExample]]],
        client: Rater | None,
        settings: EmbeddingConfig,
        *,
        progress: bool,
    ) -> dict[int, FeatureScore]:
        texts = [description for description, _ in prepared.values()]
        texts += [item.example.text for _, labelled in prepared.values() for item in labelled]
        unique = list(dict.fromkeys(texts))
        encoder = load_encoder(settings.model, settings.device)
        vectors = encoder.encode(
            unique, batch_size=settings.batch_size, max_length=settings.max_length, progress=progress
        )
        row_of = {text: index for index, text in enumerate(unique)}
        rows = {}
        for feature, (description, labelled) in prepared.items():
            similarities = vectors[[row_of[item.example.text] for item in labelled]] @ vectors[row_of[description]]
            labels = np.array([item.activating for item in labelled])
            gap = float(similarities[labels].mean() - similarities[~labels].mean())
            extras = {"similarity_gap": gap, "examples": len(labelled)}
            rows[feature] = FeatureScore(feature, similarity_auroc(labels, similarities), extras)
        return rows
