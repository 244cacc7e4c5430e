"""Paired comparisons of variants: is a variant really different from the one ranked just above it?

Every variant is scored on the same features, so two variants are compared **feature by feature**: the
per-feature differences of a score (variant minus the one it is compared with), over the features where
both define it (a NaN or undefined score leaves that feature out of that pair only; the aggregate's values
come already without the features any variant left out, harness.evaluate.aggregate). The test is the
**Wilcoxon signed-rank test** (two-sided; zero differences ranked then dropped, Pratt's method; the exact
null distribution of the signed ranks, ties included, up to 50 non-zero differences, the normal
approximation with tie correction beyond).
Why Wilcoxon and not a paired bootstrap: FADE's scores are bounded, skewed and often discrete, so a
rank test is robust where a t-like statistic is not; its p-values are analytic, so they have no
resampling floor (a bootstrap with B resamples can report nothing below 1/(B+1), which Holm over many
pairs needs), and they are deterministic without a seed. Ranking is by the mean, so the effect reported
is the mean paired difference, beside the matched-pairs rank-biserial correlation (the test's own
standardized effect, in [-1, 1]).

The p-values of one table (the adjacent comparisons of one ranking, or every pair) are **Holm-adjusted**
together; a variant "ties with the variant above" when its adjusted p-value is at least `alpha`. With fewer
than `min_features` paired features (or features from different sites) there is no test: the comparison is
marked untested, which is neither a tie nor a win, and takes no part in the Holm family.

Pure: no MLflow here (`harness.track.compare` reads the runs' per-feature tables).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.track._text import text_table

ALPHA = 0.05
MIN_FEATURES = 10  # below ~6 non-zero pairs the signed-rank test cannot reach p < 0.05 at all
EXACT_UP_TO = 50  # non-zero pairs up to which the p-value is exact; the normal approximation beyond
TEST = "wilcoxon signed-rank (Pratt), Holm-adjusted"


class PairedComparison(BaseModel):
    """One variant against a reference variant (the one ranked just above it, or any other) on one criterion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion: str = Field(description="'aggregate' or a score name")
    variant: str = Field(description="run name (untrusted text)")
    run_id: str
    reference: str = Field(description="the variant it is compared with (untrusted text)")
    reference_run_id: str
    features: int = Field(ge=0, description="paired features: those where both define the criterion")
    mean_difference: float | None = Field(description="mean over the paired features of variant minus reference")
    rank_biserial: float | None = Field(None, ge=-1, le=1, description="matched-pairs rank-biserial correlation")
    p_value: float | None = Field(None, ge=0, le=1, description="two-sided Wilcoxon signed-rank p-value")
    p_adjusted: float | None = Field(None, ge=0, le=1, description="Holm-adjusted over the table's tested comparisons")
    significant: bool | None = Field(None, description="p_adjusted < alpha; null when untested")
    reason: str | None = Field(None, description="why there is no test (then every statistic is null)")

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    @property
    def tied(self) -> bool:
        """Not significantly different after Holm (an untested comparison is no tie)."""
        return self.significant is False


def paired_values(first: pd.Series, second: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The two variants' values on the features (index) where both are finite, in feature order."""
    a = pd.to_numeric(first, errors="coerce").astype(float)
    b = pd.to_numeric(second, errors="coerce").astype(float)
    a, b = a[~a.index.duplicated()], b[~b.index.duplicated()]
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").sort_index()
    keep = np.isfinite(joined["a"].to_numpy()) & np.isfinite(joined["b"].to_numpy())
    return joined["a"].to_numpy()[keep], joined["b"].to_numpy()[keep]


def signed_rank_test(differences: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank p-value and rank-biserial correlation of paired differences.

    Zero differences take part in the ranking, then are dropped (Pratt). All differences zero: p = 1, r = 0.
    """
    from scipy.stats import rankdata, wilcoxon

    differences = np.asarray(differences, dtype=float)
    nonzero = differences != 0
    if not nonzero.any():
        return 1.0, 0.0
    ranks = rankdata(np.abs(differences))[nonzero]
    up = differences[nonzero] > 0
    positive, negative = ranks[up].sum(), ranks[~up].sum()
    biserial = float((positive - negative) / (positive + negative))
    if len(ranks) <= EXACT_UP_TO:
        p_value = _exact_p(ranks, up)
    else:
        p_value = float(wilcoxon(differences, zero_method="pratt", alternative="two-sided", method="asymptotic").pvalue)
    return min(max(p_value, 0.0), 1.0), min(max(biserial, -1.0), 1.0)


def _exact_p(ranks: np.ndarray, up: np.ndarray) -> float:
    """Two-sided p of the sum of positive ranks under random signs: its exact distribution, ties included.

    Ranks (averaged over ties) are multiples of 1/2, so the doubled ranks are integers and the distribution
    of their signed sum is counted exactly by adding one rank at a time (2**n outcomes, at most 2**50 here).
    """
    doubled = np.rint(2 * ranks).astype(np.int64)
    counts = np.zeros(int(doubled.sum()) + 1)
    counts[0] = 1.0
    for rank in doubled:
        counts[rank:] = counts[rank:] + counts[: len(counts) - rank].copy()
    counts /= counts.sum()
    observed = int(doubled[up].sum())
    lower, upper = counts[: observed + 1].sum(), counts[observed:].sum()
    return float(min(1.0, 2 * min(lower, upper)))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment (controls the family-wise error rate under any dependence).

    None entries (untested) stay None and are not counted in the family.
    """
    tested = [(p, index) for index, p in enumerate(p_values) if p is not None]
    adjusted: list[float | None] = [None] * len(p_values)
    running, family = 0.0, len(tested)
    for step, (p, index) in enumerate(sorted(tested)):
        running = max(running, min(1.0, (family - step) * p))  # monotone: never below an earlier step
        adjusted[index] = running
    return adjusted


def _unadjusted(
    criterion: str,
    variant: tuple[str, str],
    reference: tuple[str, str],
    values: pd.Series | None,
    reference_values: pd.Series | None,
    min_features: int,
    reason: str | None = None,
) -> PairedComparison:
    """One comparison with its raw p-value (p_adjusted and significant are set by `adjust`)."""
    base = {"criterion": criterion, "variant": variant[0], "run_id": variant[1], "reference": reference[0],
            "reference_run_id": reference[1]}  # fmt: skip
    if reason is None and (values is None or reference_values is None):
        missing = variant[0] if values is None else reference[0]
        reason = f"no per-feature {criterion} values for {missing}"
    if reason is not None:
        return PairedComparison(**base, features=0, mean_difference=None, reason=reason)
    a, b = paired_values(values, reference_values)
    if len(a) < min_features:
        return PairedComparison(
            **base, features=len(a), mean_difference=None,
            reason=f"only {len(a)} paired features define {criterion} (a test needs {min_features})",
        )  # fmt: skip
    differences = a - b
    p_value, biserial = signed_rank_test(differences)
    return PairedComparison(
        **base, features=len(a), mean_difference=float(differences.mean()), rank_biserial=biserial, p_value=p_value
    )


def adjust(comparisons: Sequence[PairedComparison], alpha: float = ALPHA) -> list[PairedComparison]:
    """The comparisons of one table with Holm-adjusted p-values and the decision at `alpha`."""
    adjusted = holm([comparison.p_value for comparison in comparisons])
    return [
        comparison if p is None else comparison.model_copy(update={"p_adjusted": p, "significant": p < alpha})
        for comparison, p in zip(comparisons, adjusted)
    ]


def compare_variants(
    criterion: str,
    ranked: Sequence[tuple[str, str]],
    values: Mapping[str, pd.Series | None],
    *,
    pairs: str = "adjacent",
    sites: Mapping[str, str] | None = None,
    conventions: Mapping[str, str] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> list[PairedComparison]:
    """Paired comparisons of ranked variants, Holm-adjusted together: each variant (after the first) against
    the one ranked just above it (`pairs="adjacent"`), or every pair (`"all"`: the lower-ranked one as
    `variant`, the higher-ranked as `reference`).

    Args:
        criterion: what is compared ('aggregate' or a score name; only used in names and reasons).
        ranked: (name, run id) best first.
        values: run id -> the run's per-feature values of the criterion (index = feature); None if unknown.
        pairs: "adjacent" or "all".
        sites: run id -> feature site; runs on different sites have no features in common (no test).
        conventions: run id -> how the criterion was computed (scorers.convention); runs that differ: no test.
    """
    if pairs not in ("adjacent", "all"):
        raise ValueError(f"pairs must be 'adjacent' or 'all', got {pairs!r}")
    chosen = zip(ranked, ranked[1:]) if pairs == "adjacent" else combinations(ranked, 2)
    return adjust(
        [_compare(criterion, below, above, values, sites, conventions, min_features) for above, below in chosen], alpha
    )


def _compare(criterion, variant, reference, values, sites, conventions, min_features) -> PairedComparison:
    reason = None
    if sites is not None and sites.get(variant[1]) != sites.get(reference[1]):
        reason = "different feature sites (model, site or SAE): no features in common"
    elif conventions is not None and conventions.get(variant[1]) != conventions.get(reference[1]):
        reason = "different scoring conventions (scorers.convention): not the same score"
    return _unadjusted(
        criterion, variant, reference, values.get(variant[1]), values.get(reference[1]), min_features, reason
    )


def criterion_values(per_feature: pd.DataFrame | None, criterion: str) -> pd.Series | None:
    """A run's per-feature values of one score (index = feature; NaN where undefined), or None without a
    table or that column. The aggregate's values come from harness.evaluate.aggregate instead."""
    if per_feature is None or "feature" not in per_feature.columns or criterion not in per_feature.columns:
        return None
    frame = per_feature.drop_duplicates("feature").set_index("feature")
    return pd.to_numeric(frame[criterion], errors="coerce").astype(float)


def comparisons_table(comparisons: Sequence[PairedComparison]) -> dict[str, list]:
    """MLflow's table JSON layout ({"columns", "data"}) of comparisons (as `tables/paired_comparisons.json`)."""
    columns = list(PairedComparison.model_fields)
    return {"columns": columns, "data": [[getattr(item, column) for column in columns] for item in comparisons]}


def format_p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def format_pairs(comparisons: Sequence[PairedComparison], alpha: float = ALPHA) -> str:
    """Every pair as a text table: variant vs reference, n, mean difference, r, raw and Holm p, decision."""
    header = ["variant", "vs", "n", "mean diff", "r", "p", "p (Holm)", "result"]
    rows = []
    for item in comparisons:
        result = ("different" if item.significant else "tied") if item.tested else f"no test: {item.reason}"
        rows.append([
            item.variant, item.reference, str(item.features),
            "-" if item.mean_difference is None else f"{item.mean_difference:+.3f}",
            "-" if item.rank_biserial is None else f"{item.rank_biserial:+.2f}",
            format_p(item.p_value), format_p(item.p_adjusted), result,
        ])  # fmt: skip
    lines = text_table(header, rows)
    lines.append(
        f"(every pair: {TEST} over the {len(comparisons)} pairs; 'tied' = adjusted p >= {alpha:g}; "
        "mean diff = variant minus vs, over the features both define; r = rank-biserial correlation)"
    )
    return "\n".join(lines)
