"""Input side vs output side: do the scores that ask where a feature fires and those that ask what it does to
the model's output agree, feature by feature? Gur-Arieh et al. 2025 and Arad et al. 2025 find that they
diverge; this shows whether they do here.

For each variant and each pair of an input-side and an output-side score (the manifest's `side`), Spearman's
rho across the variant's features where both are defined (`side_correlations`, pure); a pair is undefined,
with the reason, on fewer than `MIN_FEATURES` such features or a constant score. `sides_figure` draws the
per-feature scatter of each pair.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.track._ranks import spearman
from harness.track.manifest import ScoreColumn

MIN_FEATURES = 5


class SideCorrelation(BaseModel):
    """Spearman's rho of one input-side and one output-side score across one variant's features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    variant: str
    input_score: str
    output_score: str
    rho: float | None = Field(ge=-1, le=1, description="null when undefined (see reason)")
    features: int = Field(ge=0, description="features where both scores are defined (those it is computed on)")
    reason: str | None = None


def side_pairs(columns: Mapping[str, ScoreColumn]) -> list[tuple[str, str]]:
    """Every (input-side score, output-side score) pair of the manifest, in its order."""
    inputs = [name for name, column in columns.items() if column.side == "input"]
    outputs = [name for name, column in columns.items() if column.side == "output"]
    return [(first, second) for first in inputs for second in outputs]


def _values(table: pd.DataFrame, score: str) -> np.ndarray:
    if score not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[score], errors="coerce").to_numpy(dtype=float)


def side_correlations(
    names: Mapping[str, str], features: Mapping[str, pd.DataFrame | None], columns: Mapping[str, ScoreColumn]
) -> list[SideCorrelation]:
    """Each variant's rho for each side pair that has an output-side value in some variant.

    Args:
        names: run id -> variant name, in display order.
        features: run id -> its per-feature table (None: not read).
        columns: score -> its manifest column (harness.track.manifest).
    """
    pairs = [
        (first, second)
        for first, second in side_pairs(columns)
        if any(table is not None and np.isfinite(_values(table, second)).any() for table in features.values())
    ]
    found = []
    for run_id, variant in names.items():
        table = features.get(run_id)
        if table is None:
            continue
        for first, second in pairs:
            rho, count, reason = spearman(
                _values(table, first), _values(table, second), (first, second), MIN_FEATURES, "features"
            )
            found.append(SideCorrelation(run_id=run_id, variant=variant, input_score=first, output_score=second,
                                         rho=rho, features=count, reason=reason))  # fmt: skip
    return found


def format_sides(correlations: list[SideCorrelation]) -> str:
    """One row per variant and pair: rho and n, or why there is none; one line when no pair is defined."""
    from harness.track._text import text_table

    if all(item.rho is None for item in correlations):
        outputs = sorted({item.output_score for item in correlations})
        return (
            f"Input side vs output side: no variant defines an input-side score and {', '.join(outputs)} on "
            f"{MIN_FEATURES} or more features, so there is no rank correlation across features to show."
        )

    rows = [
        [item.variant, item.input_score, item.output_score,
         "—" if item.rho is None else f"{item.rho:+.2f}", str(item.features), item.reason or ""]
        for item in correlations
        if item.features  # a pair the variant defines on no feature at all says nothing: left out
    ]  # fmt: skip
    lines = text_table(["variant", "input side", "output side", "rho", "n", "undefined because"], rows)
    return (
        "Input side vs output side: Spearman rank correlation across features (does a feature that reads well "
        "on inputs also steer as described? the output-centric papers find they diverge):\n" + "\n".join(lines)
    )


def sides_figure(
    correlations: list[SideCorrelation], features: Mapping[str, pd.DataFrame | None], pair: tuple[str, str]
):
    """The per-feature scatter of one (input, output) pair, a colour per variant, its rho (as `correlations`
    hold it) in each legend entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first, second = pair
    figure, axis = plt.subplots(figsize=(5, 4), constrained_layout=True)
    for item in correlations:
        table = features.get(item.run_id)
        if (item.input_score, item.output_score) != pair or table is None:
            continue
        x, y = _values(table, first), _values(table, second)
        both = np.isfinite(x) & np.isfinite(y)
        label = f"{item.variant} (rho {'—' if item.rho is None else f'{item.rho:+.2f}'}, n={item.features})"
        axis.scatter(x[both], y[both], s=18, alpha=0.8, label=label)
    axis.set_xlabel(f"{first} (input side)")
    axis.set_ylabel(f"{second} (output side)")
    axis.set_title(f"{first} vs {second}, per feature")
    axis.legend(fontsize=7)
    return figure
