"""The aggregate: one number per feature, and per variant the mean of it over features. One definition, read by
rankings, paired tests, `harness compare`, the comparison run, the leaderboard and the search objective.

A feature's aggregate is the weighted mean of its weighted scores. An undefined score is read through its
reason (`harness.score_names.UNDEFINED_POLICY`): the description's fault (FADE's gate, no concept sample
rated 2, no description) counts 0; anything else (a dead feature, too few examples, a score turned off, a
rater that cannot do it) leaves the feature out. A variant's aggregate is the mean over the features it keeps,
with a bootstrap interval over those features and the share of features kept beside it. In a comparison
a feature any variant leaves out is left out for all (`excluded_features`), so no variant wins on features
the others could not be scored on.

Pure: tables in, numbers out (docs/leaderboard.md has a worked example).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.score_names import FADE_SCORES, Reason, Undefined, undefined_policy

AGGREGATE = "aggregate"


def default_weights(per_feature_tables: Iterable[pd.DataFrame | None]) -> dict[str, float]:
    """Equal weights over FADE's scores that some table computes: a score turned off in every run (e.g.
    Faithfulness with `fade.faithfulness.enabled: false`) is not weighted. All four when no table says."""
    tables = [table for table in per_feature_tables if table is not None]
    computed = [name for name in FADE_SCORES if any(_computes(table, name) for table in tables)]
    return {name: 1.0 for name in computed or FADE_SCORES}


def _computes(table: pd.DataFrame, score: str) -> bool:
    if score not in table.columns:
        return False
    reasons = table.get(f"{score}_reason", pd.Series(index=table.index, dtype=object))
    disabled = reasons.astype(str).eq(Reason.FAITHFULNESS_DISABLED.value) & table[score].isna()
    return not bool(disabled.all()) or table.empty


def check_weights(weights: Mapping[str, float]) -> None:
    """ConfigError unless the weights are non-negative and sum to a positive number."""
    if any(not np.isfinite(weight) or weight < 0 for weight in weights.values()):
        raise ConfigError(f"aggregate weights must be finite and non-negative, got {dict(weights)}")
    if sum(weights.values()) <= 0:
        raise ConfigError("aggregate weights must sum to a positive number")


def policy_values(per_feature: pd.DataFrame, score: str) -> pd.Series:
    """One score per feature (index = feature) as the aggregate reads it: its value where defined, 0 where the
    description is at fault, NaN where the feature is left out (`UNDEFINED_POLICY`)."""
    frame = per_feature.drop_duplicates("feature").set_index("feature")
    values = pd.to_numeric(frame[score], errors="coerce").astype(float) if score in frame else None
    if values is None:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    reasons = frame[f"{score}_reason"] if f"{score}_reason" in frame else pd.Series(None, index=frame.index)
    zero = reasons.map(lambda reason: isinstance(reason, str) and undefined_policy(reason) is Undefined.COUNTS_ZERO)
    return values.where(values.notna() | ~zero.astype(bool), 0.0)


def feature_aggregate(per_feature: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    """Each feature's aggregate (index = feature): the weighted mean of `policy_values`, NaN (left out) where
    any weighted score leaves the feature out. Scores of weight 0 play no part."""
    check_weights(weights)
    if "feature" not in per_feature.columns:
        raise ConfigError("a per-feature table needs a 'feature' column to aggregate")
    names = [name for name, weight in weights.items() if weight]
    total = sum(weights[name] for name in names)
    parts = [policy_values(per_feature, name) * (weights[name] / total) for name in names]
    combined = pd.concat(parts, axis=1)
    return combined.sum(axis=1, min_count=len(names)).where(combined.notna().all(axis=1)).rename(AGGREGATE)


def excluded_features(aggregates: Mapping[str, pd.Series]) -> pd.Index:
    """The features some variant evaluated and left out (NaN aggregate): left out for every variant, sorted.

    A feature a variant did not evaluate at all excludes nothing (its paired tests pair what both have); a
    variant that keeps no feature does not count (its aggregate is undefined, and one broken variant does not
    empty the comparison)."""
    left_out = [
        series.index[~np.isfinite(series.to_numpy(dtype=float))]
        for series in aggregates.values()
        if np.isfinite(series.to_numpy(dtype=float)).any()
    ]
    excluded = pd.Index([])
    for index in left_out:
        excluded = excluded.union(index)
    return excluded.sort_values()


def summarise_aggregate(
    values: pd.Series, total_features: int, *, num_resamples: int = 1000, seed: int = 0
) -> dict[str, float | None]:
    """A variant's aggregate over the features in `values` (NaN ones are not kept): mean, bootstrap 95%
    interval of the mean over features, how many features it kept and their share of `total_features`."""
    from harness.evaluate.scores import summarise

    kept = [float(value) for value in values if np.isfinite(value)]
    summary = summarise(kept, num_resamples=num_resamples, seed=seed) if kept else {}
    return {
        "mean": summary.get("mean"),
        "ci_low": summary.get("ci_low"),
        "ci_high": summary.get("ci_high"),
        "features": float(len(kept)),
        "defined": len(kept) / total_features if total_features else None,
    }


def aggregate_metrics(
    per_feature: pd.DataFrame, weights: Mapping[str, float], *, num_resamples: int = 1000, seed: int = 0
) -> dict[str, float | None]:
    """A run's own aggregate as metrics (`aggregate_mean`, `_ci_low`, `_ci_high`, `_features`, `_defined`):
    over the features it keeps. In a comparison, those another variant left out are left out too."""
    values = feature_aggregate(per_feature, weights)
    summary = summarise_aggregate(values, len(values), num_resamples=num_resamples, seed=seed)
    return {f"{AGGREGATE}_{part}": value for part, value in summary.items()}


def aggregate_value(per_feature: pd.DataFrame, weights: Mapping[str, float]) -> float | None:
    """The mean of a run's feature aggregates over the features it keeps (None when it keeps none): the
    search objective, and the `aggregate_mean` of the run."""
    values = feature_aggregate(per_feature, weights)
    kept = values[np.isfinite(values.to_numpy(dtype=float))]
    return float(kept.mean()) if len(kept) else None
