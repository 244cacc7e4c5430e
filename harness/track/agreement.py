"""Agreement between scorers: Spearman rank correlation of every pair of scores across variants.

Two scorers that order the variants alike measure something alike; one that orders them differently adds
information (or noise). Each pair is computed on the variants where both means are defined (pairwise
complete) and is undefined, with the reason, where a rank correlation means nothing: fewer than
`MIN_VARIANTS` such variants, or a score that is the same for all of them.

`rank_correlations` is pure; `agreement_figure` draws it; `log_scorer_agreement` writes it to the active
MLflow run (the parent run of a comparison or a study).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.artifacts import SCORER_AGREEMENT_PLOT, SCORER_AGREEMENT_TABLE
from harness.track._ranks import spearman
from harness.track.compare import score_names

MIN_VARIANTS = 3  # with two variants every defined rank correlation is +1 or -1
METRIC_PREFIX = "rank_corr"


class RankCorrelation(BaseModel):
    """Spearman's rho of two scores' means across the variants where both are defined."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: str
    second: str
    rho: float | None = Field(ge=-1, le=1, description="null when undefined (see reason)")
    variants: int = Field(ge=0, description="variants where both scores are defined (those it is computed on)")
    reason: str | None = Field(None, description="why rho is undefined")


class ScorerAgreement(BaseModel):
    """Every pair of `scores` (in that order, first before second) over a set of variants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "spearman"
    variants: int = Field(ge=0, description="variants it was computed over (each pair uses those defining both)")
    scores: list[str]
    pairs: list[RankCorrelation]

    def pair(self, first: str, second: str) -> RankCorrelation:
        """The correlation of two scores, in either order."""
        for pair in self.pairs:
            if {pair.first, pair.second} == {first, second} and first != second:
                return pair
        raise KeyError(f"no pair {first!r}, {second!r} among the scores {', '.join(self.scores)}")


def rank_correlations(means: pd.DataFrame, scores: Sequence[str] | None = None) -> ScorerAgreement:
    """Spearman's rho for every pair of scores across the variants (rows) of `means`.

    Args:
        means: one row per variant with `<score>_mean` columns; None, NaN and infinities count as undefined.
        scores: the scores to pair, in display order (default: every `<score>_mean` column, FADE's first).
            A score without a column is undefined for every variant.
    """
    names = list(scores) if scores is not None else score_names(means)
    values = {
        name: pd.to_numeric(means[f"{name}_mean"], errors="coerce").to_numpy(dtype=float)
        if f"{name}_mean" in means.columns
        else np.full(len(means), np.nan)
        for name in names
    }
    pairs = [_correlation(first, second, values[first], values[second]) for first, second in combinations(names, 2)]
    return ScorerAgreement(variants=len(means), scores=names, pairs=pairs)


def _correlation(first: str, second: str, first_values: np.ndarray, second_values: np.ndarray) -> RankCorrelation:
    rho, count, reason = spearman(first_values, second_values, (first, second), MIN_VARIANTS, "variants")
    return RankCorrelation(first=first, second=second, rho=rho, variants=count, reason=reason)


def scores_with_values(means: pd.DataFrame, scores: Sequence[str]) -> list[str]:
    """The scores that have a defined mean for at least one variant."""
    return [
        name
        for name in scores
        if f"{name}_mean" in means.columns
        and np.isfinite(pd.to_numeric(means[f"{name}_mean"], errors="coerce").to_numpy(dtype=float)).any()
    ]


def format_agreement(agreement: ScorerAgreement) -> str:
    """The lower triangle as a text table: rho and n per pair, '—' where undefined (the reasons below it)."""
    rows, columns = agreement.scores[1:], agreement.scores[:-1]
    width = max(len(name) for name in agreement.scores) + 2
    lines = [
        f"Spearman rank correlation of scorers across {agreement.variants} variants (rho, n = variants defining both):",
        " " * width + "".join(f"{name:>{width}}" for name in columns),
    ]
    undefined = []
    for row, second in enumerate(rows):
        cells = []
        for first in columns[: row + 1]:
            pair = agreement.pair(first, second)
            cells.append(f"{'—' if pair.rho is None else f'{pair.rho:+.2f}'} ({pair.variants})")
            if pair.rho is None:
                undefined.append(f"  {first} vs {second}: {pair.reason}")
        lines.append(f"{second:<{width}}" + "".join(f"{cell:>{width}}" for cell in cells))
    return "\n".join(lines + (["undefined:", *undefined] if undefined else []))


def agreement_figure(agreement: ScorerAgreement):
    """A heatmap of the lower triangle (one cell per pair), each cell annotated with rho and n, or why not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = agreement.scores
    rows, columns = names[1:], names[:-1]
    grid = np.full((len(rows), len(columns)), np.nan)
    size = 1.15 * max(len(columns), 2) + 2.2
    figure, axis = plt.subplots(figsize=(size + 1.2, size), constrained_layout=True)
    for row, second in enumerate(rows):
        for column, first in enumerate(columns[: row + 1]):
            pair = agreement.pair(first, second)
            if pair.rho is not None:
                grid[row, column] = pair.rho
                text, colour = f"ρ = {pair.rho:.2f}\nn = {pair.variants}", "white" if abs(pair.rho) > 0.6 else "black"
            else:
                axis.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, color="#e6e6e6"))
                why = f"n = {pair.variants} < {MIN_VARIANTS}" if pair.variants < MIN_VARIANTS else "constant"
                text, colour = f"—\n{why}", "#555555"
            axis.text(column, row, text, ha="center", va="center", fontsize=9, color=colour)
    image = axis.imshow(grid, cmap="RdBu", vmin=-1, vmax=1)
    axis.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
    axis.set_yticks(range(len(rows)), rows)
    axis.set_xlim(-0.5, len(columns) - 0.5)
    axis.set_ylim(len(rows) - 0.5, -0.5)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)
    figure.colorbar(image, ax=axis, shrink=0.8, label="Spearman's ρ")
    axis.set_title(
        f"Spearman rank correlation of scorers across {agreement.variants} variants\n"
        "(score means; each cell on the variants defining both; — = undefined)",
        fontsize=10,
    )
    return figure


def log_scorer_agreement(means: pd.DataFrame) -> ScorerAgreement | None:
    """Log the agreement of the scores in `means` to the active MLflow run, when at least two have values.

    Writes the heatmap (`SCORER_AGREEMENT_PLOT`), the pairs as a table (`SCORER_AGREEMENT_TABLE`) and one metric
    `rank_corr.<first>.<second>` per defined pair. Returns what it logged (None when it logged nothing).
    """
    import matplotlib.pyplot as plt
    import mlflow

    from harness.track.runs import log_metrics

    scores = scores_with_values(means, score_names(means))
    if len(scores) < 2:
        return None
    agreement = rank_correlations(means, scores)
    columns = list(RankCorrelation.model_fields)
    mlflow.log_dict(
        {"columns": columns, "data": [[getattr(pair, column) for column in columns] for pair in agreement.pairs]},
        SCORER_AGREEMENT_TABLE,
    )
    log_metrics({f"{METRIC_PREFIX}.{pair.first}.{pair.second}": pair.rho for pair in agreement.pairs})
    figure = agreement_figure(agreement)
    mlflow.log_figure(figure, SCORER_AGREEMENT_PLOT)
    plt.close(figure)
    return agreement
