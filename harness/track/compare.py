"""Ranked comparison of tracked pipeline variants: one `Comparison` read by the end of `harness run`,
`harness compare`, the comparison run in MLflow and the leaderboard.

Each variant run logs, per score, `<score>_mean`, `<score>_ci_low`, `<score>_ci_high` and `<score>_defined`
(share of features where the score is defined), and its per-feature table. Ranking is by one score's mean
(over the features that define it) or by the aggregate (harness.evaluate.aggregate: one value per feature
under the undefined-score policy, averaged over the features no variant of the site left out). Each variant
is compared with the one ranked just above it by a paired test over the same per-feature values
(`harness.track.paired`): a variant not significantly different after Holm's correction ties with it and
shares its rank. Variants on different feature sites (another model, weights, module or SAE) are never
paired. Without per-feature tables there is no aggregate, no test and no tie. The controls table
(harness.track.controls) and the feature labels (harness.evaluate.labels) come with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.artifacts import (
    CONTROLS_TABLE,
    FEATURE_LABELS_TABLE,
    PAIRED_COMPARISONS_TABLE,
    PER_FEATURE_TABLE,
    SCORE_MANIFEST,
    SIDES_PLOTS,
    SIDES_TABLE,
)
from harness.errors import ConfigError
from harness.evaluate.aggregate import (
    AGGREGATE,
    check_weights,
    default_weights,
    excluded_features,
    feature_aggregate,
    summarise_aggregate,
)
from harness.evaluate.labels import GATE_THRESHOLD, INTERPRETABLE_INTRUDER, FeatureLabel, feature_labels, label_counts
from harness.score_names import FADE_SCORES
from harness.track._text import text_table
from harness.track.controls import ControlTest, control_tests, flagged_scores, format_controls
from harness.track.manifest import (
    ScoreColumn,
    description_free,
    merged_columns,
    read_score_manifest,
    run_score_names,
)
from harness.track.paired import ALPHA, MIN_FEATURES, PairedComparison, compare_variants, criterion_values
from harness.track.runs import PARTIAL_TAG
from harness.track.sides import SideCorrelation, format_sides, side_correlations, sides_figure

RANKED_ROLES = ("variant", "trial")  # not the parent runs of comparisons and studies
# Params that say where a feature lives: the same feature index of two variants is the same feature only
# when these agree (the random-model and random-sae controls have features of their own).
SITE_PARAMS = (
    "model.name",
    "model.weights",
    "model.random_seed",
    "site.kind",
    "site.module",
    "site.hook",
    "site.sae.path",
    "site.sae.weights",
    "site.sae.random_seed",
)
AGGREGATE_PARTS = ("mean", "ci_low", "ci_high", "features", "defined")
# Scores computed by one of two conventions (scorers.convention: ours, or eai-delphi 0.1.3's): only runs of the
# same convention are compared, and every table names the convention (docs/scorers/detection.md).
CONVENTION_PARAM = "param:scorers.convention"
CONVENTION_SCORES = ("detection", "fuzzing")
CONVENTION_NAMES = {
    "harness": "ours (docs/scorers)",
    "delphi": "delphi's (eai-delphi 0.1.3; pooled headline <score>_pooled)",
}


def score_names(table: pd.DataFrame) -> list[str]:
    """Scores with a `<score>_mean` column: FADE's four first (in their order), then the others by name."""
    found = {column.removesuffix("_mean") for column in table.columns if column.endswith("_mean")} - {AGGREGATE}
    return [name for name in FADE_SCORES if name in found] + sorted(found - set(FADE_SCORES))


def aggregate_weights(
    table: pd.DataFrame, weights: Mapping[str, float] | None, features: Mapping[str, pd.DataFrame | None]
) -> dict[str, float]:
    """The aggregate's weights: as given (checked), else `default_weights` of the runs' per-feature tables."""
    if not weights:
        return default_weights(features.get(str(run_id)) for run_id in table.get("run_id", []))
    unknown = sorted(set(weights) - set(score_names(table)) - set(FADE_SCORES))
    if unknown:
        known = ", ".join(dict.fromkeys([*FADE_SCORES, *score_names(table)]))
        raise ConfigError(f"unknown score(s) in weights: {', '.join(unknown)}; known: {known}")
    check_weights(weights)
    return dict(weights)


def comparison_aggregates(
    table: pd.DataFrame, features: Mapping[str, pd.DataFrame | None], weights: Mapping[str, float]
) -> dict[str, pd.Series | None]:
    """Run id -> its feature aggregates, less the features any run of its feature site left out (None without
    a per-feature table, or when a weighted score is missing from it): the numbers the ranking averages and the
    paired tests pair. harness.evaluate.aggregate defines them."""
    run_ids = [str(run_id) for run_id in table["run_id"]]
    sites = feature_sites(table) or {}
    own: dict[str, pd.Series | None] = {}
    for run_id in run_ids:
        frame = features.get(run_id)
        missing = frame is None or any(name not in frame.columns for name, weight in weights.items() if weight)
        own[run_id] = None if missing else feature_aggregate(frame, weights)
    result: dict[str, pd.Series | None] = dict.fromkeys(run_ids)
    for site in dict.fromkeys(sites.get(run_id, "") for run_id in run_ids):
        group = {
            run_id: series for run_id, series in own.items() if sites.get(run_id, "") == site and series is not None
        }
        excluded = excluded_features(group)
        for run_id, series in group.items():
            result[run_id] = series.drop(excluded, errors="ignore")
    return result


def rank_variants(
    table: pd.DataFrame,
    by: str = AGGREGATE,
    weights: Mapping[str, float] | None = None,
    *,
    features: Mapping[str, pd.DataFrame | None] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
    values: Mapping[str, pd.Series | None] | None = None,
) -> pd.DataFrame:
    """Sort variants best first and number them; one not significantly different from the one above ties.

    Args:
        table: one row per variant with `run_id` and `<score>_mean` columns (`param:<key>` columns, when
            present, tell the feature sites apart).
        by: a score name (ranked by its mean over the features that define it), or "aggregate"
            (harness.evaluate.aggregate: per feature under the undefined-score policy, averaged over the
            features less those any variant of the site left out).
        weights: score name -> weight for the aggregate (default: `default_weights`).
        features: run id -> its per-feature table (`feature`, score and `<score>_reason` columns;
            `feature_scores` reads them). The aggregate needs it; without it there is no paired test and
            no tie.
        alpha, min_features: the paired test's level (after Holm) and the fewest paired features it needs.
        values: `ranking_values` of `by` when the caller has them already (they are read once per comparison).

    Adds `rank`, `tied` and, per row after the first, `vs_above`: the PairedComparison with the row above
    (None for the first row). Ranked by the aggregate, also `aggregate_<part>` for AGGREGATE_PARTS.
    """
    ranked = table.copy()
    features = features or {}
    run_ids = [str(run_id) for run_id in ranked["run_id"]] if "run_id" in ranked else [str(i) for i in ranked.index]
    if by != AGGREGATE and f"{by}_mean" not in ranked.columns:
        raise ConfigError(f"cannot rank by {by!r}: known scores are {', '.join(score_names(table)) or 'none'}")
    if values is None:
        values = ranking_values(ranked.assign(run_id=run_ids), by, features, weights)
    if by == AGGREGATE:
        for part in AGGREGATE_PARTS:
            ranked[f"{AGGREGATE}_{part}"] = np.nan
        for position, run_id in enumerate(run_ids):
            series = values[run_id]
            if series is not None:
                total = len(features[run_id].drop_duplicates("feature"))  # type: ignore[union-attr]
                for part, value in summarise_aggregate(series, total).items():
                    ranked.loc[ranked.index[position], f"{AGGREGATE}_{part}"] = value
    key = f"{by}_mean"
    order = ranked[key].astype(float).to_numpy()
    positions = sorted(range(len(ranked)), key=lambda i: (np.isnan(order[i]), -np.nan_to_num(order[i])))
    ranked = ranked.iloc[positions].reset_index(drop=True)
    named = [(str(variant), run_ids[i]) for variant, i in zip(ranked["variant"], positions)]
    comparisons = compare_variants(
        by, named, values, sites=feature_sites(ranked), conventions=_conventions(ranked, by),
        alpha=alpha, min_features=min_features,
    )  # fmt: skip
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


def _conventions(table: pd.DataFrame, by: str) -> dict[str, str] | None:
    """Run id -> its scorers.convention, for a score computed by one of several conventions (else None)."""
    if by not in CONVENTION_SCORES or "run_id" not in table.columns:
        return None
    return dict(zip(map(str, table["run_id"]), _convention_of_each(table)))


def _convention_of_each(table: pd.DataFrame) -> list[str]:
    """Each row's scorers.convention (runs logged before the setting existed: ours)."""
    column = table.get(CONVENTION_PARAM, pd.Series("harness", index=table.index))
    return [value if isinstance(value, str) and value else "harness" for value in column]


def score_conventions(table: pd.DataFrame, columns: Mapping[str, ScoreColumn] | None = None) -> dict[str, str]:
    """Score -> the convention it was computed by, in words, for the scores that have one; a table mixing
    conventions names which variants use which. `columns`: the runs' score manifests (`merged_columns`;
    default: what the registry says of the table's scores)."""
    found: dict[str, str] = {}
    present = set(score_names(table))
    for score in CONVENTION_SCORES:
        if score not in present:
            continue
        used: dict[str, list[str]] = {}
        for name, convention in zip(table["variant"], _convention_of_each(table)):
            used.setdefault(convention, []).append(str(name))
        if len(used) == 1:
            found[score] = CONVENTION_NAMES.get(next(iter(used)), next(iter(used)))
        else:
            found[score] = (
                "; ".join(f"{CONVENTION_NAMES.get(key, key)} for {', '.join(names)}" for key, names in used.items())
                + " (not compared across conventions)"
            )
    if columns is None:
        columns = merged_columns((), present)
    found |= {
        name: column.convention
        for name, column in columns.items()
        if column.convention and name in present and name not in found
    }
    return found


def ranking_values(
    table: pd.DataFrame,
    by: str,
    features: Mapping[str, pd.DataFrame | None],
    weights: Mapping[str, float] | None = None,
) -> dict[str, pd.Series | None]:
    """Run id -> the per-feature values a ranking by `by` compares (as `rank_variants` reads them)."""
    if by == AGGREGATE:
        return comparison_aggregates(table, features, aggregate_weights(table, weights, features))
    return {str(run_id): criterion_values(features.get(str(run_id)), by) for run_id in table["run_id"]}


def paired_tests(
    ranked: pd.DataFrame,
    by: str,
    weights: Mapping[str, float] | None,
    features: Mapping[str, pd.DataFrame | None],
    *,
    pairs: str = "adjacent",
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> list[PairedComparison]:
    """The paired comparison of each row (after the first) of a ranked table with the row above it, or of
    every pair of rows (`pairs="all"`); see `compare_variants`. The values are the ranking's own."""
    if len(ranked) < 2:
        return []
    named = list(zip(map(str, ranked["variant"]), map(str, ranked["run_id"])))
    values = ranking_values(ranked, by, features, weights)
    return compare_variants(
        by, named, values, pairs=pairs, sites=feature_sites(ranked), conventions=_conventions(ranked, by),
        alpha=alpha, min_features=min_features,
    )  # fmt: skip


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
    """Run id -> its `tables/per_feature.json` (feature, score and `<score>_reason` columns, NaN where a
    score is undefined), or None (see `run_scores`)."""
    return run_scores(run_ids, tracking_uri)[0]


def run_scores(
    run_ids: Sequence[str], tracking_uri: str
) -> tuple[dict[str, pd.DataFrame | None], dict[str, list[ScoreColumn] | None]]:
    """Run id -> its per-feature score table (as `feature_scores`), and run id -> its score manifest (None for
    a run logged before manifests): the manifest says which columns are scores.

    A store that keeps artifacts on this disk is read in place; another's files are downloaded.
    """
    import tempfile
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    found: dict[str, pd.DataFrame | None] = {}
    manifests: dict[str, list[ScoreColumn] | None] = {}
    with tempfile.TemporaryDirectory(prefix="harness-per-feature-") as staging:
        for run_id in run_ids:
            location = urlparse(client.get_run(run_id).info.artifact_uri)
            paths: dict[str, Path | None] = {}
            for artifact in (PER_FEATURE_TABLE, SCORE_MANIFEST):
                if location.scheme == "file" and location.netloc in ("", "localhost"):
                    paths[artifact] = Path(url2pathname(location.path)) / artifact
                else:
                    try:
                        paths[artifact] = Path(client.download_artifacts(run_id, artifact, staging))
                    except Exception:  # noqa: BLE001 - any store error: the run has no readable file
                        paths[artifact] = None
            manifest_path, table_path = paths[SCORE_MANIFEST], paths[PER_FEATURE_TABLE]
            manifests[run_id] = read_score_manifest(manifest_path) if manifest_path is not None else None
            found[run_id] = (
                _score_frame(table_path, run_score_names(manifests[run_id]))
                if table_path is not None and table_path.is_file()
                else None
            )
    return found, manifests


def _score_frame(path: Path, names: set[str]) -> pd.DataFrame | None:
    """The feature column and the score columns (`names`) of a per-feature table (None when unreadable)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda constant: None)
        frame = pd.DataFrame(content["data"], columns=content["columns"])
    except (ValueError, KeyError, TypeError):
        return None
    if "feature" not in frame.columns:
        return None
    scores = [column for column in frame.columns if column != "feature" and column in names]
    reasons = [f"{column}_reason" for column in scores if f"{column}_reason" in frame.columns]
    frame = frame[["feature", *scores, *reasons]].copy()
    for column in scores:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in reasons:  # why a score is undefined: the aggregate reads it (harness.score_names.Undefined)
        frame[column] = frame[column].map(lambda reason: reason if isinstance(reason, str) else None)
    return frame


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
                **{f"tag:{key}": value for key, value in run.data.tags.items() if key.startswith("harness.")},
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


def format_ranking(
    ranked: pd.DataFrame,
    by: str,
    flags: Mapping[str, str] | None = None,
    columns: Mapping[str, ScoreColumn] | None = None,
) -> str:
    """A terminal table: rank, variant, the aggregate and each FADE score as mean [low, high] with the share of
    features behind it, other scorers' means, cost, features, and the paired comparison with the row above
    (mean difference, Holm-adjusted p). Scores in `flags` (harness.track.controls.flagged_scores) are marked;
    `columns` are the runs' score manifests (for the conventions; see `score_conventions`)."""
    flags = flags or {}
    lines = []
    fade = [name for name in FADE_SCORES if f"{name}_mean" in ranked]
    others = [name for name in score_names(ranked) if name not in FADE_SCORES]

    def title(name: str) -> str:
        return f"{name}(!)" if name in flags else name

    header = ["rank", "variant", *map(title, fade), *map(title, others), "cost_usd", "features", "vs above"]
    if by == AGGREGATE:
        header.insert(2, title(AGGREGATE))
    rows, untested, partial = [], {}, False
    for _, row in ranked.iterrows():
        name = str(row["variant"])
        if is_partial(row):
            name, partial = f"{name} (partial)", True
        cells = [f"{row['rank']}{'=' if row['tied'] else ''}", name]
        if by == AGGREGATE:
            cells.append(_summary(row, AGGREGATE))
        cells += [_summary(row, name) for name in fade]
        cells += [_number(row.get(f"{name}_mean")) for name in others]
        cells += [_number(row.get("cost_usd"), digits=4), _number(row.get("features"), digits=0)]
        cells.append(_vs_above(row.get("vs_above"), untested))
        rows.append(cells)
    lines += text_table(header, rows)
    note = "; other scorers: means (intervals in MLflow and on the leaderboard)" if others else ""
    over = (
        "the aggregate: per feature, a description's fault counts 0, a feature's leaves it out for every variant "
        "(docs/leaderboard.md); mean [95% interval] share of features; "
        if by == AGGREGATE
        else ""
    )
    lines.append(
        f"(ranked by {by}; {over}scores: mean over the features that define them [95% interval] share defined; "
        f"'=' marks a tie: not significantly different from the variant above by a paired Wilcoxon signed-rank "
        f"test over the same features, Holm-adjusted p >= alpha; vs above: mean paired difference, n paired "
        f"features, adjusted p{note})"
    )
    lines += [f"  no test [{mark}]: {reason}" for reason, mark in untested.items()]
    lines += [f"  (!) {name}: {why}" for name, why in flags.items()]
    lines += [f"  {name}: computed by {how}" for name, how in score_conventions(ranked, columns).items()]
    if partial:
        lines.append(
            "  (partial): finished with --keep-going although some features' LLM calls failed (metric "
            "features_llm_failed; those scores are llm_failed and leave the feature out of the aggregate); "
            "`harness run` again completes it"
        )
    return "\n".join(lines)


def is_partial(row: Mapping[str, Any]) -> bool:
    """A run finished with --keep-going while some of its LLM calls had failed (tag harness.partial)."""
    value = row.get(f"tag:{PARTIAL_TAG}")
    return isinstance(value, str) and bool(value)


def _summary(row: pd.Series, name: str) -> str:
    """'0.412 [0.350, 0.470] 94%': mean, interval and share of features (defined, or kept by the aggregate)."""
    share = row.get(f"{name}_defined")
    coverage = "" if share is None or pd.isna(share) else f" {float(share):.0%}"
    return (
        f"{_number(row.get(f'{name}_mean'))} [{_number(row.get(f'{name}_ci_low'))}, "
        f"{_number(row.get(f'{name}_ci_high'))}]{coverage}"
    )


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


def variant_names(table: pd.DataFrame) -> dict[str, str]:
    """Run id -> variant name of a variants table, in its order."""
    return dict(zip(map(str, table["run_id"]), map(str, table["variant"])))


@dataclass
class Comparison:
    """Everything a comparison of tracked variants shows, computed once by `build_comparison`: the end of
    `harness run`, `harness compare`, the comparison run in MLflow and the leaderboard all read it."""

    table: pd.DataFrame  # one row per run (variants_table)
    features: dict[str, pd.DataFrame | None]  # run id -> its per-feature table
    weights: dict[str, float]  # the aggregate's
    rankings: dict[str, pd.DataFrame]  # criterion ('aggregate', then each score) -> rank_variants
    controls: list[ControlTest]  # each variant vs its controls (harness.track.controls)
    flags: dict[str, str]  # score -> why it cannot be trusted to tell a trained model from a random one
    labels: dict[str, pd.Series]  # run id -> FeatureLabel per feature (harness.evaluate.labels)
    alpha: float
    min_features: int
    columns: dict[str, ScoreColumn]  # score -> what it is, from the runs' manifests (harness.track.manifest)
    sides: list[SideCorrelation]  # per variant, each input-side vs output-side score across features

    def ranked(self, by: str) -> pd.DataFrame:
        if by not in self.rankings:
            raise ConfigError(f"cannot rank by {by!r}: known scores are {', '.join(score_names(self.table)) or 'none'}")
        return self.rankings[by]

    def paired(self) -> list[PairedComparison]:
        """Each variant vs the one ranked just above it under every criterion; a criterion is one Holm family."""
        return [item for ranked in self.rankings.values() for item in ranked["vs_above"] if isinstance(item, PairedComparison)]  # fmt: skip

    @property
    def variant_names(self) -> dict[str, str]:
        """Run id -> variant name, in the table's order."""
        return variant_names(self.table)

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Run id -> how many of its features carry each label."""
        return {run_id: label_counts(labels) for run_id, labels in self.labels.items()}


def build_comparison(
    table: pd.DataFrame,
    features: Mapping[str, pd.DataFrame | None],
    *,
    manifests: Mapping[str, list[ScoreColumn] | None] | None = None,
    weights: Mapping[str, float] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> Comparison:
    """Rank the runs of `table` under the aggregate and every score, test each against its controls and
    label each feature (pure: the per-feature tables and score manifests are given; a run without a manifest
    is read through the registry)."""
    features = {str(run_id): features.get(str(run_id)) for run_id in table["run_id"]}
    columns = merged_columns((manifests or {}).values(), score_names(table))
    weights = aggregate_weights(table, weights, features)
    criteria = (AGGREGATE, *score_names(table))
    values = {criterion: ranking_values(table, criterion, features, weights) for criterion in criteria}
    rankings = {
        criterion: rank_variants(table, by=criterion, weights=weights if criterion == AGGREGATE else None,
                                 features=features, alpha=alpha, min_features=min_features, values=values[criterion])
        for criterion in criteria
    }  # fmt: skip
    controls = control_tests(
        table, values, description_free=description_free(columns), alpha=alpha, min_features=min_features
    )
    thresholds = table.set_index("run_id").get("param:fade.gini_threshold", pd.Series(dtype=object))
    labels = {
        run_id: feature_labels(frame, gate_threshold=_float(thresholds.get(run_id), GATE_THRESHOLD))
        for run_id, frame in features.items()
        if frame is not None
    }
    sides = side_correlations(variant_names(table), features, columns)
    return Comparison(
        table, features, weights, rankings, controls, flagged_scores(controls), labels, alpha, min_features, columns,
        sides,
    )  # fmt: skip


def load_comparison(
    experiment_names: Sequence[str],
    tracking_uri: str,
    *,
    run_ids: Sequence[str] | None = None,
    weights: Mapping[str, float] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> Comparison:
    """`build_comparison` of the finished variant runs of the experiments (only `run_ids`, when given)."""
    table = variants_table(experiment_names, tracking_uri, run_ids=run_ids)
    features, manifests = run_scores(list(table["run_id"]), tracking_uri) if not table.empty else ({}, {})
    return build_comparison(
        table, features, manifests=manifests, weights=weights, alpha=alpha, min_features=min_features
    )


def _float(value: object, default: float) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def format_comparison(comparison: Comparison, by: str) -> str:
    """The ranking under `by`, then the controls table and the per-feature labels per variant, as text."""
    parts = [format_ranking(comparison.ranked(by), by, comparison.flags, comparison.columns)]
    if comparison.controls:
        parts.append("Controls: does each score tell a variant from its randomized controls?\n" + format_controls(
            comparison.controls, comparison.alpha))  # fmt: skip
    if comparison.labels:
        parts.append(format_labels(comparison))
    if comparison.sides:
        parts.append(format_sides(comparison.sides))
    return "\n\n".join(parts)


def format_labels(comparison: Comparison) -> str:
    """Per variant: how many features are well described, badly described, not interpretable, undetermined."""
    names = comparison.variant_names
    header = ["variant", *(label.value for label in FeatureLabel)]
    rows = [[names[run_id], *map(str, counts.values())] for run_id, counts in comparison.label_counts().items()]
    lines = text_table(header, rows)
    lines.append(
        f"(why is a feature's score low? well described: Clarity and Responsiveness pass FADE's gate; otherwise "
        f"the description-free intruder score >= {INTERPRETABLE_INTRUDER:g} says the feature is interpretable by "
        f"this rater; docs/leaderboard.md)"
    )
    return "Features by why their scores are what they are:\n" + "\n".join(lines)


def log_comparison(comparison: Comparison) -> None:
    """Write the comparison to the active MLflow run: the paired comparisons, the controls table, the feature
    labels and the per-variant label counts (docs/tracking.md)."""
    import mlflow

    from harness.track.paired import comparisons_table

    paired = comparison.paired()
    if paired:
        mlflow.log_dict(comparisons_table(paired), PAIRED_COMPARISONS_TABLE)
    if comparison.controls:
        columns = list(ControlTest.model_fields)
        rows = [[getattr(item, column) for column in columns] for item in comparison.controls]
        mlflow.log_dict({"columns": columns, "data": rows}, CONTROLS_TABLE)
    if comparison.labels:
        names = comparison.variant_names
        rows = [[names[run_id], run_id, int(feature), label] for run_id, labels in comparison.labels.items()
                for feature, label in labels.items()]  # fmt: skip
        mlflow.log_dict({"columns": ["variant", "run_id", "feature", "label"], "data": rows}, FEATURE_LABELS_TABLE)
    if comparison.sides:
        _log_sides(comparison)


def _log_sides(comparison: Comparison) -> None:
    """The input/output side correlations as a table, and the scatter of each pair defined for some variant."""
    import matplotlib.pyplot as plt
    import mlflow

    columns = list(SideCorrelation.model_fields)
    rows = [[getattr(item, column) for column in columns] for item in comparison.sides]
    mlflow.log_dict({"columns": columns, "data": rows}, SIDES_TABLE)
    pairs = dict.fromkeys((item.input_score, item.output_score) for item in comparison.sides if item.rho is not None)
    for pair in pairs:
        figure = sides_figure(comparison.sides, comparison.features, pair)
        mlflow.log_figure(figure, f"{SIDES_PLOTS}/{pair[0]}-vs-{pair[1]}.png")
        plt.close(figure)
