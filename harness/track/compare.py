"""Ranked comparison of tracked pipeline variants (`harness compare`, and the leaderboard's table).

Each variant run logs, per score, `<score>_mean`, `<score>_ci_low`, `<score>_ci_high` and
`<score>_defined` (share of features where the score is defined). Ranking is by one score's mean or by a
weighted aggregate of means. With the runs' per-feature scores, each variant is compared with the one ranked
just above it by a paired test over the features both define (`harness.track.paired`): a variant that is
not significantly different after Holm's correction ties with it and shares its rank. Without per-feature
scores there is no test, and no tie.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.artifacts import PAIRED_COMPARISONS_TABLE, PER_FEATURE_TABLE
from harness.errors import ConfigError
from harness.score_names import FADE_SCORES
from harness.track.paired import ALPHA, MIN_FEATURES, PairedComparison, compare_variants, criterion_values

AGGREGATE = "aggregate"
RANKED_ROLES = ("variant", "trial")  # not the parent runs of comparisons and studies
# Params that say where a feature lives: the same feature index of two variants is the same feature only
# when these agree.
SITE_PARAMS = ("model.name", "site.kind", "site.module", "site.hook", "site.sae.path")


def weighted_aggregate(means: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """Weighted mean of score means; an undefined mean counts as 0 (a variant that scores nothing is bad).

    The one definition of "aggregate", shared by rankings and the search objective.
    """
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError("aggregate weights must sum to a positive number")
    return sum(weight * _defined_or_zero(means.get(name)) for name, weight in weights.items()) / total


def _defined_or_zero(value: float | None) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def aggregate_score(table: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    """The weighted aggregate of every row (variant) of a table with `<score>_mean` columns."""
    unknown = sorted(set(weights) - set(score_names(table)) - set(FADE_SCORES))
    if unknown:
        raise ConfigError(f"unknown score(s) in weights: {', '.join(unknown)}; known: {', '.join(FADE_SCORES)}")
    rows = table.to_dict("records")
    values = [weighted_aggregate({name: row.get(f"{name}_mean") for name in weights}, weights) for row in rows]
    return pd.Series(values, index=table.index, dtype=float)


def score_names(table: pd.DataFrame) -> list[str]:
    """Scores with a `<score>_mean` column: FADE's four first (in their order), then the others by name."""
    found = {column.removesuffix("_mean") for column in table.columns if column.endswith("_mean")} - {AGGREGATE}
    return [name for name in FADE_SCORES if name in found] + sorted(found - set(FADE_SCORES))


def rank_variants(
    table: pd.DataFrame,
    by: str = AGGREGATE,
    weights: Mapping[str, float] | None = None,
    *,
    features: Mapping[str, pd.DataFrame | None] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> pd.DataFrame:
    """Sort variants best first and number them; one not significantly different from the one above ties.

    Args:
        table: one row per variant with `run_id` and `<score>_mean` columns (`param:<key>` columns, when
            present, tell the feature sites apart).
        by: a score name, or "aggregate" for the weighted mean of `weights` (default: equal weights over
            the four FADE scores present).
        weights: score name -> weight for the aggregate.
        features: run id -> its per-feature table (`feature` and score columns; `feature_scores` reads
            them). Without it (or for a run missing from it) there is no paired test and no tie.
        alpha, min_features: the paired test's level (after Holm) and the fewest paired features it needs.

    Adds `rank`, `tied` and, per row after the first, `vs_above`: the PairedComparison with the row above
    (None for the first row).
    """
    ranked = table.copy()
    if by == AGGREGATE:
        weights = weights or default_weights(ranked)
        ranked[f"{AGGREGATE}_mean"] = aggregate_score(ranked, weights)
    elif f"{by}_mean" not in ranked.columns:
        raise ConfigError(f"cannot rank by {by!r}: known scores are {', '.join(score_names(table)) or 'none'}")
    key = f"{by}_mean"
    ranked = ranked.sort_values(key, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    comparisons = paired_tests(ranked, by, weights or {}, features or {}, alpha=alpha, min_features=min_features)
    ranks, tied = [], []
    for position in range(len(ranked)):
        # An undefined mean ranks last and never ties (there is nothing to compare).
        tie = position > 0 and not pd.isna(ranked[key].iloc[position]) and comparisons[position - 1].tied
        tied.append(bool(tie))
        ranks.append(ranks[-1] if tie else position + 1)
    ranked.insert(0, "rank", ranks)
    ranked["tied"] = tied
    ranked["vs_above"] = [None, *comparisons][: len(ranked)]
    return ranked


def default_weights(table: pd.DataFrame) -> dict[str, float]:
    """The aggregate's weights when none are given: equal over the FADE scores the table has (all four if none)."""
    present = [name for name in FADE_SCORES if f"{name}_mean" in table.columns]
    return {name: 1.0 for name in present or FADE_SCORES}


def paired_tests(
    ranked: pd.DataFrame,
    by: str,
    weights: Mapping[str, float],
    features: Mapping[str, pd.DataFrame | None],
    *,
    pairs: str = "adjacent",
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> list[PairedComparison]:
    """The paired comparison of each row (after the first) of a ranked table with the row above it, or of
    every pair of rows (`pairs="all"`); see `compare_variants`."""
    if len(ranked) < 2:
        return []
    run_ids = [str(run_id) for run_id in ranked["run_id"]] if "run_id" in ranked else [str(i) for i in ranked.index]
    named = list(zip(map(str, ranked["variant"]), run_ids))
    values = {run_id: criterion_values(features.get(run_id), by, weights) for run_id in run_ids}
    return compare_variants(
        by, named, values, pairs=pairs, sites=feature_sites(ranked), alpha=alpha, min_features=min_features
    )


def feature_sites(table: pd.DataFrame) -> dict[str, str] | None:
    """Run id -> its feature site (model, site kind, module, hook, SAE), from `param:` columns; None without."""
    columns = [f"param:{key}" for key in SITE_PARAMS if f"param:{key}" in table.columns]
    if not columns or "run_id" not in table.columns:
        return None
    return {
        str(row["run_id"]): " · ".join("" if pd.isna(row[column]) else str(row[column]) for column in columns)
        for _, row in table.iterrows()
    }


def feature_scores(run_ids: Sequence[str], tracking_uri: str) -> dict[str, pd.DataFrame | None]:
    """Run id -> its `tables/per_feature.json` (feature and score columns, NaN where undefined), or None.

    A store that keeps artifacts on this disk is read in place; another's file is downloaded.
    """
    import tempfile
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found: dict[str, pd.DataFrame | None] = {}
    with tempfile.TemporaryDirectory(prefix="harness-per-feature-") as staging:
        for run_id in run_ids:
            location = urlparse(client.get_run(run_id).info.artifact_uri)
            if location.scheme == "file" and location.netloc in ("", "localhost"):
                path = Path(url2pathname(location.path)) / PER_FEATURE_TABLE
            else:
                try:
                    path = Path(client.download_artifacts(run_id, PER_FEATURE_TABLE, staging))
                except Exception:  # noqa: BLE001 - any store error: the run has no readable table
                    path = None
            found[run_id] = _score_frame(path) if path is not None and path.is_file() else None
    return found


def _score_frame(path: Path) -> pd.DataFrame | None:
    """The feature column and every numeric score column of a per-feature table (None when unreadable)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda constant: None)
        frame = pd.DataFrame(content["data"], columns=content["columns"])
    except (ValueError, KeyError, TypeError):
        return None
    if "feature" not in frame.columns:
        return None
    keep = ["feature", *(column for column in frame.columns if column != "feature" and _is_score(column))]
    frame = frame[keep].copy()
    for column in keep[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def _is_score(column: str) -> bool:
    from harness.evaluate.scorers import SCORERS

    return column in FADE_SCORES or column in SCORERS.names()


def variants_table(
    experiment_names: Sequence[str], tracking_uri: str, run_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per finished variant (or trial) run: name, run id, settings params and every metric."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_ids = []
    for name in experiment_names:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            known = ", ".join(sorted(e.name for e in client.search_experiments())) or "none"
            raise ConfigError(f"no experiment {name!r} in {tracking_uri}; experiments there: {known}")
        experiment_ids.append(experiment.experiment_id)
    runs = client.search_runs(
        experiment_ids,
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    )
    rows = []
    for run in runs:
        if run.data.tags.get("harness.role") not in RANKED_ROLES or (run_ids and run.info.run_id not in run_ids):
            continue
        rows.append(
            {
                "variant": run.info.run_name,
                "run_id": run.info.run_id,
                "experiment": next(n for n, i in zip(experiment_names, experiment_ids) if i == run.info.experiment_id),
                **{f"param:{key}": value for key, value in run.data.params.items()},
                **run.data.metrics,
            }
        )
    return pd.DataFrame(rows)


def count_failed_runs(experiment_names: Sequence[str], tracking_uri: str, run_ids: Sequence[str] | None = None) -> int:
    """How many variant (or trial) runs ended FAILED or KILLED: rankings leave them out and say so."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiments = [client.get_experiment_by_name(name) for name in experiment_names]
    runs = client.search_runs(
        [experiment.experiment_id for experiment in experiments if experiment is not None],
        filter_string="attributes.status != 'FINISHED'",
    )
    return sum(
        run.info.status in ("FAILED", "KILLED")
        and run.data.tags.get("harness.role") in RANKED_ROLES
        and (not run_ids or run.info.run_id in run_ids)
        for run in runs
    )


def failed_runs_note(count: int) -> str:
    """The line that says how many failed runs a ranking left out ('' when none)."""
    if not count:
        return ""
    runs = "run" if count == 1 else "runs"
    return f"{count} failed {runs} left out (MLflow status FAILED or KILLED; the tag harness.error says why)"


def format_ranking(ranked: pd.DataFrame, by: str) -> str:
    """A terminal table: rank, variant, each FADE score as mean [low, high], other scorers' means, cost,
    features, and the paired comparison with the row above (mean difference, Holm-adjusted p)."""
    lines = []
    fade = [name for name in FADE_SCORES if f"{name}_mean" in ranked]
    others = [name for name in score_names(ranked) if name not in FADE_SCORES]
    header = ["rank", "variant", *fade, *others, "cost_usd", "features", "vs above"]
    if by == AGGREGATE:
        header.insert(2, AGGREGATE)
    rows, untested = [], {}
    for _, row in ranked.iterrows():
        cells = [f"{row['rank']}{'=' if row['tied'] else ''}", str(row["variant"])]
        if by == AGGREGATE:
            cells.append(_number(row.get(f"{AGGREGATE}_mean")))
        for name in fade:
            cells.append(
                f"{_number(row.get(f'{name}_mean'))} [{_number(row.get(f'{name}_ci_low'))}, "
                f"{_number(row.get(f'{name}_ci_high'))}]"
            )
        cells += [_number(row.get(f"{name}_mean")) for name in others]
        cells += [_number(row.get("cost_usd"), digits=4), _number(row.get("features"), digits=0)]
        cells.append(_vs_above(row.get("vs_above"), untested))
        rows.append(cells)
    widths = [max(len(str(item)) for item in column) for column in zip(header, *rows)]
    for cells in [header, *rows]:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip())
    note = "; other scorers: means (intervals in MLflow and on the leaderboard)" if others else ""
    lines.append(
        f"(ranked by {by}; '=' marks a tie: not significantly different from the variant above by a paired "
        f"Wilcoxon signed-rank test over the features both define, Holm-adjusted p >= alpha; vs above: mean "
        f"paired difference, n paired features, adjusted p{note})"
    )
    lines += [f"  no test [{mark}]: {reason}" for reason, mark in untested.items()]
    return "\n".join(lines)


def _vs_above(comparison: PairedComparison | None, untested: dict[str, str]) -> str:
    """'-0.052 n=24 p=0.003' for a tested comparison; 'no test [a]' (reason noted below) otherwise."""
    if not isinstance(comparison, PairedComparison):
        return ""
    if not comparison.tested:
        mark = untested.setdefault(comparison.reason or "untested", "abcdefghijklmnopqrstuvwxyz"[len(untested) % 26])
        return f"no test [{mark}]"
    from harness.track.paired import format_p

    p_value = format_p(comparison.p_adjusted)
    return f"{comparison.mean_difference:+.3f} n={comparison.features} p{'' if p_value[0] == '<' else '='}{p_value}"


def _number(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def site_params(config: Any) -> dict[str, str]:
    """The `param:<key>` cells of SITE_PARAMS for a config (as `variants_table` reads them from a run)."""
    data = config.model_dump(mode="json")
    cells = {}
    for key in SITE_PARAMS:
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            cells[f"param:{key}"] = str(node)
    return cells


def paired_comparisons(
    table: pd.DataFrame,
    features: Mapping[str, pd.DataFrame | None],
    *,
    weights: Mapping[str, float] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> list[PairedComparison]:
    """Each variant vs the one ranked just above it, under every criterion ('aggregate', then each score);
    each criterion's comparisons are one Holm family (as the ranking under it shows them)."""
    comparisons: list[PairedComparison] = []
    for criterion in (AGGREGATE, *score_names(table)):
        ranked = rank_variants(table, by=criterion, weights=weights if criterion == AGGREGATE else None,
                               features=features, alpha=alpha, min_features=min_features)  # fmt: skip
        comparisons += [item for item in ranked["vs_above"] if isinstance(item, PairedComparison)]
    return comparisons


def log_paired_comparisons(
    table: pd.DataFrame,
    features: Mapping[str, pd.DataFrame | None],
    *,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> list[PairedComparison]:
    """Write `paired_comparisons` to the active MLflow run as `tables/paired_comparisons.json`."""
    import mlflow

    from harness.track.paired import comparisons_table

    comparisons = paired_comparisons(table, features, alpha=alpha, min_features=min_features)
    if comparisons:
        mlflow.log_dict(comparisons_table(comparisons), PAIRED_COMPARISONS_TABLE)
    return comparisons
