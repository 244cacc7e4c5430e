"""Ranked comparison of tracked pipeline variants (`harness compare`, and the leaderboard's table).

Each variant run logs, per score, `<score>_mean`, `<score>_ci_low`, `<score>_ci_high` and
`<score>_defined` (share of features where the score is defined). Ranking is by one score's mean or by a
weighted aggregate of means; variants whose 95% intervals overlap the one ranked just above (or with the
same value) share its rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from harness.errors import ConfigError

SCORES = ("clarity", "responsiveness", "purity", "faithfulness")
AGGREGATE = "aggregate"
RANKED_ROLES = ("variant", "trial")  # not the parent runs of comparisons and studies


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
    unknown = sorted(set(weights) - set(score_names(table)) - set(SCORES))
    if unknown:
        raise ConfigError(f"unknown score(s) in weights: {', '.join(unknown)}; known: {', '.join(SCORES)}")
    rows = table.to_dict("records")
    values = [weighted_aggregate({name: row.get(f"{name}_mean") for name in weights}, weights) for row in rows]
    return pd.Series(values, index=table.index, dtype=float)


def score_names(table: pd.DataFrame) -> list[str]:
    """Scores with a `<score>_mean` column: FADE's four first (in their order), then the others by name."""
    found = {column.removesuffix("_mean") for column in table.columns if column.endswith("_mean")} - {AGGREGATE}
    return [name for name in SCORES if name in found] + sorted(found - set(SCORES))


def rank_variants(table: pd.DataFrame, by: str = AGGREGATE, weights: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Sort variants best first and number them; overlapping 95% CIs with the variant above share a rank.

    Args:
        table: one row per variant with `<score>_mean/_ci_low/_ci_high` columns.
        by: a score name, or "aggregate" for the weighted mean of `weights` (default: equal weights over
            the four FADE scores present).
        weights: score name -> weight for the aggregate.
    """
    ranked = table.copy()
    if by == AGGREGATE:
        present = [name for name in SCORES if f"{name}_mean" in ranked.columns]
        ranked[f"{AGGREGATE}_mean"] = aggregate_score(ranked, weights or {name: 1.0 for name in present or SCORES})
    elif f"{by}_mean" not in ranked.columns:
        raise ConfigError(f"cannot rank by {by!r}: known scores are {', '.join(score_names(table)) or 'none'}")
    key = f"{by}_mean"
    ranked = ranked.sort_values(key, ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    ranks, tied = [], []
    low, high = ranked.get(f"{by}_ci_low"), ranked.get(f"{by}_ci_high")
    for position in range(len(ranked)):
        value = ranked[key].iloc[position]
        overlaps = position > 0 and not np.isnan(value) and (
            value == ranked[key].iloc[position - 1]
            or low is not None
            and high is not None
            and _intervals_overlap(low.iloc[position - 1], high.iloc[position - 1], low.iloc[position], high.iloc[position])
        )
        tied.append(bool(overlaps))
        ranks.append(ranks[-1] if overlaps else position + 1)
    ranked.insert(0, "rank", ranks)
    ranked["tied"] = tied
    return ranked


def _intervals_overlap(low_a: float, high_a: float, low_b: float, high_b: float) -> bool:
    if any(pd.isna(value) for value in (low_a, high_a, low_b, high_b)):
        return False
    return bool(low_a <= high_b and low_b <= high_a)


def variants_table(experiment_names: Sequence[str], tracking_uri: str, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
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
    """A terminal table: rank, variant, each FADE score as mean [low, high], other scorers' means, cost, features."""
    lines = []
    fade = [name for name in SCORES if f"{name}_mean" in ranked]
    others = [name for name in score_names(ranked) if name not in SCORES]
    header = ["rank", "variant", *fade, *others, "cost_usd", "features"]
    if by == AGGREGATE:
        header.insert(2, AGGREGATE)
    rows = []
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
        rows.append(cells)
    widths = [max(len(str(item)) for item in column) for column in zip(header, *rows)]
    for cells in [header, *rows]:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)))
    note = "; other scorers: means (intervals in MLflow and on the leaderboard)" if others else ""
    lines.append(f"(ranked by {by}; '=' marks a tie: its 95% CI overlaps the variant above{note})")
    return "\n".join(lines)


def _number(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{float(value):.{digits}f}"
