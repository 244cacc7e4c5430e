"""An independent reference for the leaderboard's tie marks: scipy's Wilcoxon and Holm written out here,
on the per-feature tables read straight back from MLflow (not through harness.track)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from scipy.stats import wilcoxon

FADE = ("clarity", "responsiveness", "purity", "faithfulness")


# Written out here, not read from harness.score_names: the reasons that are the description's fault count 0.
COUNTS_ZERO = {"no_description", "no_positive_samples", "no_synthetic_samples", "no_rated_2_samples",
               "no_rated_0_samples", "baseline_all_rated_2", "below_gini_threshold",
               "clarity_or_responsiveness_undefined"}  # fmt: skip


def per_feature_values(uri: str, run_id: str, criterion: str) -> dict[int, float]:
    """feature -> value of a score where defined, or of the equal-weight aggregate of the FADE scores the table
    has (an undefined score counts 0 when its reason is the description's fault; otherwise the feature is out)."""
    path = Path(MlflowClient(uri).download_artifacts(run_id, "tables/per_feature.json"))
    content = json.loads(path.read_text())
    rows = [dict(zip(content["columns"], row)) for row in content["data"]]
    names = [name for name in FADE if name in content["columns"]] if criterion == "aggregate" else [criterion]
    values = {}
    for row in rows:
        parts = [
            row[name]
            if row[name] is not None
            else (0.0 if row.get(f"{name}_reason") in COUNTS_ZERO and criterion == "aggregate" else None)
            for name in names
        ]
        if all(part is not None for part in parts):
            values[int(row["feature"])] = float(np.mean(parts))
    return values


def aggregate_values(uri: str, run_ids: Sequence[str]) -> list[dict[int, float]]:
    """Each run's feature aggregates less every feature some run evaluated and left out (one comparison)."""
    values = [per_feature_values(uri, run_id, "aggregate") for run_id in run_ids]
    evaluated = [_features(uri, run_id) for run_id in run_ids]
    excluded = set().union(*(rows - set(found) for rows, found in zip(evaluated, values) if found))
    return [{feature: value for feature, value in sorted(found.items()) if feature not in excluded} for found in values]


def _features(uri: str, run_id: str) -> set[int]:
    path = Path(MlflowClient(uri).download_artifacts(run_id, "tables/per_feature.json"))
    content = json.loads(path.read_text())
    return {int(row[content["columns"].index("feature")]) for row in content["data"]}


def holm_reference(p_values: Sequence[float | None]) -> list[float | None]:
    order = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    best = 0.0
    for step, (p, i) in enumerate(order):
        best = max(best, min(1.0, (len(order) - step) * p))
        adjusted[i] = best
    return adjusted


def expected_ties(
    uri: str, run_ids_best_first: Sequence[str], criterion: str, alpha=0.05, min_features=10
) -> list[bool]:
    """Whether each run (after the first) ties with the one above, by the paired Wilcoxon and Holm."""
    values = (
        aggregate_values(uri, run_ids_best_first)
        if criterion == "aggregate"
        else [per_feature_values(uri, run_id, criterion) for run_id in run_ids_best_first]
    )
    raw = []
    for above, below in zip(values, values[1:]):
        common = sorted(set(above) & set(below))
        differences = np.array([below[f] - above[f] for f in common])
        if len(common) < min_features:
            raw.append(None)
        elif not differences.any():
            raw.append(1.0)
        else:
            # scipy's exact distribution where it applies (no ties, no zeros, n <= 50), else its normal
            # approximation (the harness counts the exact distribution with ties too: decisions agree
            # unless a p-value sits right at alpha)
            exact = len(differences) <= 50 and differences.all() and len(set(np.abs(differences))) == len(differences)
            raw.append(
                float(wilcoxon(differences, zero_method="pratt", method="exact" if exact else "asymptotic").pvalue)
            )
    return [p is not None and p >= alpha for p in holm_reference(raw)]
