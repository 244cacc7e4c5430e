"""`leaderboard.json`: the ranked table other tools read, validated before it is written (docs/leaderboard.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.track.agreement import ScorerAgreement
from harness.track.controls import ControlTest
from harness.track.paired import ALPHA, MIN_FEATURES, TEST, PairedComparison
from harness.track.sides import SideCorrelation

# 2: `aggregate` is the one per-feature aggregate (harness.evaluate.aggregate), with its interval and coverage;
# the controls table, flagged scores and feature labels were added.
SCHEMA_VERSION = 2
AGGREGATE_SUMMARY = ("mean", "ci_low", "ci_high", "defined")
AGGREGATE_POLICY = (
    "Per feature, the weighted mean of the weighted scores; an undefined score counts 0 when the description is at "
    "fault (FADE's gate, no sample rated 2, no description) and leaves the feature out for every variant of its "
    "site otherwise (a dead feature, too few examples, a score turned off). A variant's aggregate is the mean over "
    "its features less those any variant of its site left out, with a bootstrap 95% interval over them and the "
    "share kept."
)

# Settings shown as columns, each read from the first dotted param key present in the run (the config tree
# logs `explain.prompt.template`; the tracking contract also names the short form `explain.template`).
SETTINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("explainer", "Explainer", ("explain.explainer",)),
    ("explainer_model", "Explainer model", ("explain.llm.model",)),
    ("prompt", "Prompt", ("explain.prompt.template", "explain.template")),
    ("num_examples", "Examples", ("explain.selection.num_examples", "explain.num_examples")),
    ("selection", "Selection", ("explain.selection.strategy", "explain.selection")),
    ("rater", "Rater", ("rater", "fade.rater.model")),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScoreSummary(_Strict):
    """One FADE score of one variant over its features; None where the run logged nothing (undefined)."""

    mean: float | None = None
    median: float | None = None
    ci_low: float | None = Field(None, description="bootstrap 95% interval of the mean")
    ci_high: float | None = None
    defined: float | None = Field(None, ge=0, le=1, description="share of features where the score is defined")


class Rank(_Strict):
    rank: int = Field(ge=1)
    tied: bool = Field(
        description="not significantly different from the variant ranked just above (paired test over the "
        "features both define, Holm-adjusted; see paired_test); false when untested"
    )
    vs_above: PairedComparison | None = Field(
        None, description="the paired comparison with the variant ranked just above; null for the first"
    )


class PairedTest(_Strict):
    """How ties are decided: a paired test of each variant vs the one ranked above, Holm over each ranking."""

    method: str = TEST
    alpha: float = Field(ALPHA, gt=0, lt=1, description="level of the Holm-adjusted p-values")
    min_features: int = Field(MIN_FEATURES, ge=2, description="fewest paired features for a test (fewer: untested)")


class VariantSettings(_Strict):
    explainer: str | None = None
    explainer_model: str | None = None
    prompt: str | None = None
    num_examples: str | None = None
    selection: str | None = None
    rater: str | None = None


class VariantEntry(_Strict):
    """One ranked pipeline variant (one finished MLflow run)."""

    rank: int = Field(ge=1, description="rank under the document's rank_by")
    tied: bool = Field(description="tied under rank_by (see Rank.tied)")
    ranks: dict[str, Rank] = Field(description="rank under every criterion: 'aggregate' and each score")
    variant: str = Field(description="the run name (untrusted text)")
    run_id: str
    experiment: str
    settings: VariantSettings
    scores: dict[str, ScoreSummary]
    aggregate: float | None = Field(
        description="the aggregate (document's aggregate_policy and weights): mean over the compared features"
    )
    aggregate_summary: ScoreSummary = Field(
        default_factory=ScoreSummary,
        description="the aggregate's mean, bootstrap 95% interval over features and share of features kept",
    )
    partial: bool = Field(
        False, description="finished with --keep-going while some LLM calls failed (tag harness.partial)"
    )
    labels: dict[str, int] = Field(
        default_factory=dict, description="features per label: why their scores are what they are (FeatureLabel)"
    )
    cost_usd: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens: int | None = Field(None, description="prompt + completion tokens")
    llm_calls: int | None = None
    features: int | None = Field(None, description="features evaluated")
    page: str = Field(description="the variant's page, relative to the site root")


class LeaderboardDocument(_Strict):
    """The whole leaderboard: how it was ranked, and the variants best first."""

    schema_version: Literal[2] = SCHEMA_VERSION
    title: str
    generated_at: datetime
    experiments: list[str]
    rank_by: str = Field(description="'aggregate' or a score name")
    weights: dict[str, float] = Field(description="score -> weight of the aggregate")
    aggregate_policy: str = Field(AGGREGATE_POLICY, description="how the aggregate reads undefined scores")
    scores: list[str] = Field(description="the scores present, in display order")
    variants: list[VariantEntry]
    paired_test: PairedTest = Field(default_factory=PairedTest, description="how ties are decided")
    controls: list[ControlTest] = Field(
        default_factory=list,
        description="each variant vs its randomized controls, per score (Holm over each score's tests)",
    )
    score_conventions: dict[str, str] = Field(
        default_factory=dict,
        description="score -> the convention it was computed by (scorers.convention; saebench: SAEBench's), in words",
    )
    flagged_scores: dict[str, str] = Field(
        default_factory=dict,
        description="score -> why it is flagged: it did not separate a variant from its random-model/random-sae control",
    )
    input_output: list[SideCorrelation] = Field(
        default_factory=list,
        description="per variant, each input-side score (where a feature fires) vs each output-side score (what it "
        "does to the output): Spearman's rho across the variant's features; empty when no output-side score has values",
    )
    scorer_agreement: ScorerAgreement | None = Field(
        None,
        description="Spearman rank correlation of every pair of scores' means across all the variants above; "
        "null with fewer than two scores",
    )
