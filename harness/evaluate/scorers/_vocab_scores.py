"""Arad et al. (2025)'s input and output scores: description-free scores of a feature's vocabulary projection.

Both read the top tokens of the feature's output direction projected onto the vocabulary (final norm, then
the unembedding: harness.sites.vocab_projection). The input score asks whether the feature fires on those
tokens (its top examples' peak tokens); the output score whether steering the feature makes the model say
them. Neither reads a description (`kind = "feature"`): the same number in every variant of a site.
Method and choices: docs/scorers/output-centric.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import Field

from harness.config import StrictModel
from harness.errors import SiteError
from harness.evaluate.scorers._base import FeatureScore, Scorer, SubjectSite
from harness.evaluate.scorers._output_metrics import vocab_input_score, vocab_output_score
from harness.evaluate.scorers._steering import ModelCounts, largest_activation_at_last, steered_next_token
from harness.evaluate.scores import Score
from harness.explain import FeatureRecord
from harness.score_names import Reason
from harness.sites import vocab_projection

ARAD = "Arad et al. 2025 (technion-cs-nlp/saes-are-good-for-steering)"


class VocabScoreConfig(StrictModel):
    """What both of Arad et al.'s scores share: how many projection tokens count."""

    top_tokens: int = Field(20, ge=1, le=1000, description="top tokens of the vocabulary projection (logit_lens_top_k)")

    @property
    def num_non_activating(self) -> int:
        """Least-active pool samples it needs (least_active_needed reads it): none."""
        return 0


class InputScoreConfig(VocabScoreConfig):
    """Arad et al.'s input score."""

    max_examples: int = Field(100, ge=1, description="top activating examples read (the reference's 100)")
    min_examples: int = Field(10, ge=1, description="fewer activating examples: undefined (the reference skips)")


class OutputScoreConfig(VocabScoreConfig):
    """Arad et al.'s output score."""

    prompt: str = Field("From my experience,", min_length=1, description="the neutral prompt steered")
    amplification: float = Field(
        10.0, gt=0, description="the feature is raised by this x the largest activation at the prompt's last token"
    )
    batch_rows: int = Field(32, ge=1, description="features per forward pass")


def projection_tokens(subject: SubjectSite, features: Sequence[int], count: int) -> dict[int, list[int]] | Reason:
    """feature -> the ids of its `count` top vocabulary-projection tokens, or why the site has none."""
    try:
        directions = subject.site.output_directions(subject.model, list(features))
    except SiteError:
        return Reason.NO_OUTPUT_DIRECTION
    top = torch.topk(vocab_projection(subject.model, directions), k=count, dim=-1).indices
    return {int(feature): row.tolist() for feature, row in zip(features, top)}


class _VocabScorer(Scorer):
    needs_llm = False
    needs_model = True
    needs_description = False
    kind = "feature"
    convention = ARAD

    def _tokens_or_undefined(
        self, features: Sequence[int], settings: VocabScoreConfig
    ) -> tuple[dict[int, list[int]], dict[int, FeatureScore]]:
        assert self.subject is not None  # Scorer.score: needs_model
        tokens = projection_tokens(self.subject, features, settings.top_tokens)
        if isinstance(tokens, Reason):
            return {}, {feature: FeatureScore(feature, Score.undefined(tokens)) for feature in features}
        return tokens, {}


class InputScoreScorer(_VocabScorer):
    """Share of the top activating examples whose peak token is among the projection's top tokens."""

    settings_model = InputScoreConfig
    extra_columns = ("examples",)

    def prepare(self, record: FeatureRecord, description: str, settings: InputScoreConfig) -> list[str] | Reason:
        """The peak token (as shown) of each activating top example."""
        shown = [example for example in record.top_examples[: settings.max_examples] if example.activations.size]
        peaks = [
            example.tokens[int(example.activations.argmax())] for example in shown if example.activations.max() > 0
        ]
        if not peaks:
            return Reason.NO_ACTIVATING_EXAMPLES
        if len(peaks) < settings.min_examples:
            return Reason.TOO_FEW_ACTIVATING_EXAMPLES
        return peaks

    def evaluate(
        self, prepared: Mapping[int, list[str]], client: Any, settings: InputScoreConfig, *, progress: bool
    ) -> dict[int, FeatureScore]:
        assert self.subject is not None  # Scorer.score: needs_model
        tokens, rows = self._tokens_or_undefined(list(prepared), settings)
        tokenizer = self.subject.model.tokenizer
        for feature, wanted in tokens.items():
            # As the reference: the token's text encoded again, its first token (after any BOS) is its id.
            peaks = [ids[0] for ids in tokenizer(prepared[feature], add_special_tokens=False)["input_ids"] if ids]
            score = (
                Score.of(vocab_input_score(peaks, wanted)) if peaks else Score.undefined(Reason.NO_ACTIVATING_EXAMPLES)
            )
            rows[feature] = FeatureScore(feature, score, {"examples": len(peaks)})
        return rows


class OutputScoreScorer(_VocabScorer):
    """max p(t) x (1 - min rank(t) / |V|) over the projection's top tokens, in the next-token distribution
    after the prompt with the feature raised at its last token."""

    settings_model = OutputScoreConfig
    side = "output"  # what the feature does to the next token
    extra_columns = ("added",)
    counts: ModelCounts | None = None  # the last evaluation's model work (the benchmark reads it)

    def prepare(self, record: FeatureRecord, description: str, settings: OutputScoreConfig) -> int:
        return record.feature

    def evaluate(
        self, prepared: Mapping[int, int], client: Any, settings: OutputScoreConfig, *, progress: bool
    ) -> dict[int, FeatureScore]:
        assert self.subject is not None  # Scorer.score: needs_model
        model, site = self.subject.model, self.subject.site
        features = list(prepared)
        tokens, rows = self._tokens_or_undefined(features, settings)
        if not tokens:
            return rows
        self.counts = ModelCounts(forwards=1)  # the clean run to the site
        added = settings.amplification * largest_activation_at_last(model, site, settings.prompt)
        if added <= 0:
            return {feature: FeatureScore(feature, Score.undefined(Reason.NO_STEERING_SCALE)) for feature in features}
        vectors = added * site.feature_vectors(features)
        probabilities = steered_next_token(model, site, settings.prompt, vectors, settings.batch_rows, self.counts)
        return {
            feature: FeatureScore(feature, Score.of(vocab_output_score(row, tokens[feature])), {"added": added})
            for feature, row in zip(features, probabilities)
        }
