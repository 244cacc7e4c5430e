"""Read tracked variant runs (docs/tracking contract) into ranked entries and per-feature records.

The run-level numbers come from `harness.track.compare.variants_table` (one MLflow query); the per-feature
tables and plots are copied out of each run's artifacts. Everything read here is untrusted text: it is kept
as data and only ever rendered escaped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pandas as pd

from harness.artifacts import (
    CORPUS_SAMPLES_TABLE,
    FEATURE_PLOTS,
    PER_FEATURE_TABLE,
    PLOTS,
    RATED_CONTINUATIONS_TABLE,
    RATED_SAMPLES_TABLE,
    SCORE_MANIFEST,
    TABLES,
    TOP_EXAMPLES_TABLE,
)
from harness.errors import HarnessError
from harness.score_names import CLARITY_ABOVE_FLOOR, FADE_SCORES
from harness.secrets import redact, redact_text
from harness.track.compare import (
    AGGREGATE,
    SITE_PARAMS,
    build_comparison,
    is_partial,
    rank_variants,
    run_scores,
    score_conventions,
    variants_table,
)
from harness.track.controls import ControlTest
from harness.track.manifest import read_score_manifest, run_score_names
from harness.track.paired import ALPHA, MIN_FEATURES
from harness.track.sides import SideCorrelation
from leaderboard._document import AGGREGATE_SUMMARY, SETTINGS, Rank, ScoreSummary, VariantEntry, VariantSettings

PARAM_PREFIX = "param:"
REQUIRED_COLUMNS = {
    PER_FEATURE_TABLE: ("feature", "description"),
    TOP_EXAMPLES_TABLE: ("feature", "activations"),
    RATED_SAMPLES_TABLE: ("feature", "rating"),
    RATED_CONTINUATIONS_TABLE: ("feature", "rating"),
    CORPUS_SAMPLES_TABLE: ("sample_id", "text"),
}
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class LeaderboardError(HarnessError):
    """The runs cannot be turned into a leaderboard (none found, malformed artifact, unsafe output folder)."""


@dataclass
class RankedVariants:
    """Finished variant runs, best first, with what their pages show beyond the table row."""

    entries: list[VariantEntry]
    scores: list[str]
    weights: dict[str, float]
    params: dict[str, dict[str, str]]
    metrics: dict[str, dict[str, float]]
    controls: list[ControlTest] = field(default_factory=list)
    flags: dict[str, str] = field(default_factory=dict)  # score -> why it cannot tell trained from random
    labels: dict[str, dict[int, str]] = field(default_factory=dict)  # run id -> feature -> FeatureLabel value
    conventions: dict[str, str] = field(default_factory=dict)  # score -> the convention it was computed by
    sides: list[SideCorrelation] = field(default_factory=list)  # input-side vs output-side, per variant and pair
    # run id -> its per-feature values of the scores in `sides` (the scatter of each pair)
    side_values: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Plot:
    """A PNG of the run: its path inside `plots/` and its pixel size (so pages reserve its space)."""

    path: str
    width: int
    height: int


@dataclass
class RunArtifacts:
    """One run's per-feature records (JSON-ready dicts) and the plots staged for copying into the site."""

    features: list[dict[str, Any]] = field(default_factory=list)
    top_examples: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)  # rows of EXAMPLE_FIELDS
    rated_samples: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)  # rows of RATED_FIELDS
    plots_dir: Path | None = None  # the run's `plots/` (in the store itself, or downloaded): copy, never move
    plots: list[Plot] = field(default_factory=list)
    feature_plots: dict[int, list[Plot]] = field(default_factory=dict)


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's header; None when the file is not a PNG."""
    with open(path, "rb") as file:
        header = file.read(24)
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return None
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def finite(value: Any) -> float | None:
    """A finite number as float, else None (NaN, None, text, bool)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def safe_segment(text: str) -> str:
    """`text` when it is a safe path segment (MLflow run ids are), else a short hash of it."""
    return text if _SAFE_SEGMENT.fullmatch(text) else hashlib.sha1(text.encode()).hexdigest()[:16]


def variant_page(run_id: str) -> str:
    return f"variants/{safe_segment(run_id)}/index.html"


def site_key(params: Mapping[str, str]) -> str:
    """Human-readable identity of the feature site (model, kind, module, SAE) of a run."""
    return " · ".join(params[key] for key in SITE_PARAMS if params.get(key))


def read_ranked_variants(
    experiment_names: Sequence[str],
    tracking_uri: str,
    *,
    run_ids: Sequence[str] | None = None,
    rank_by: str = AGGREGATE,
    weights: Mapping[str, float] | None = None,
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> RankedVariants:
    """The finished variant runs of the experiments, ranked by `rank_by` and also by every other criterion.

    Ties come from a paired test of each variant vs the one ranked above it, over the features both define
    (read from each run's `tables/per_feature.json`), Holm-adjusted over each ranking; see
    harness.track.paired.
    """
    table = variants_table(experiment_names, tracking_uri, run_ids=run_ids)
    where = f"experiment(s) {', '.join(map(repr, experiment_names))} of {redact_text(tracking_uri)}"
    if table.empty:
        raise LeaderboardError(
            f"no finished variant runs in {where}; run `harness run` first, or check the experiment names"
        )
    if not any(f"{name}_mean" in table.columns for name in FADE_SCORES):
        raise LeaderboardError(
            f"the runs in {where} log no score means ({', '.join(f'{name}_mean' for name in FADE_SCORES)}); "
            "were they evaluated?"
        )
    if rank_by != AGGREGATE and f"{rank_by}_mean" not in table.columns:
        rank_variants(table, by=rank_by)  # raises the clear "cannot rank by" error before any artifact is read
    features, manifests = run_scores(list(table["run_id"]), tracking_uri)
    # The one comparison `harness compare` and the comparison run show (harness.track.compare).
    comparison = build_comparison(
        table, features, manifests=manifests, weights=weights, alpha=alpha, min_features=min_features
    )
    scores = _shown_scores(comparison.columns)
    rankings = {criterion: comparison.rankings[criterion] for criterion in dict.fromkeys((AGGREGATE, *scores, rank_by))}
    ranks = {
        criterion: {
            run_id: Rank(rank=rank, tied=tied, vs_above=vs_above)
            for run_id, rank, tied, vs_above in zip(
                ranked["run_id"], ranked["rank"], ranked["tied"], ranked["vs_above"]
            )
        }
        for criterion, ranked in rankings.items()
    }
    aggregates = {
        row["run_id"]: ScoreSummary(**{part: finite(row.get(f"{AGGREGATE}_{part}")) for part in AGGREGATE_SUMMARY})
        for row in rankings[AGGREGATE].to_dict("records")
    }
    label_counts = comparison.label_counts()
    entries, params, metrics = [], {}, {}
    for row in rankings[rank_by].to_dict("records"):
        run_id = row["run_id"]
        # Redacted again: runs logged before secrets were refused, or by other tools, may hold one.
        params[run_id] = redact(
            {
                key[len(PARAM_PREFIX) :]: value
                for key, value in row.items()
                if key.startswith(PARAM_PREFIX) and isinstance(value, str)
            }
        )
        metrics[run_id] = {
            key: number
            for key in table.columns
            if not key.startswith(f"{AGGREGATE}_") and (number := finite(row.get(key))) is not None
        }
        entry = _entry(row, ranks, scores, aggregates[run_id], params[run_id], metrics[run_id])
        entries.append(entry.model_copy(update={"labels": label_counts.get(run_id, {}), "partial": is_partial(row)}))
    labels = {run_id: {int(feature): str(label) for feature, label in series.items()}
              for run_id, series in comparison.labels.items()}  # fmt: skip
    side_scores = sorted({name for item in comparison.sides for name in (item.input_score, item.output_score)})
    side_values = {
        run_id: frame.reindex(columns=side_scores)
        for run_id, frame in comparison.features.items()
        if frame is not None and side_scores
    }
    return RankedVariants(
        entries, scores, comparison.weights, params, metrics, comparison.controls, comparison.flags, labels,
        score_conventions(table, comparison.columns), comparison.sides, side_values,
    )  # fmt: skip


def _entry(
    row: Mapping[str, Any],
    ranks: Mapping[str, Mapping[str, Rank]],
    scores: Sequence[str],
    aggregate: ScoreSummary,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
) -> VariantEntry:
    def count(name: str) -> int | None:
        return round(metrics[name]) if name in metrics else None

    prompt_tokens, completion_tokens = count("prompt_tokens"), count("completion_tokens")
    tokens = (
        None if prompt_tokens is None and completion_tokens is None else (prompt_tokens or 0) + (completion_tokens or 0)
    )
    settings = {name: next((params[key] for key in keys if key in params), None) for name, _, keys in SETTINGS}
    return VariantEntry(
        rank=int(row["rank"]),
        tied=bool(row["tied"]),
        ranks={criterion: by_run[row["run_id"]] for criterion, by_run in ranks.items()},
        variant=str(row["variant"]),
        run_id=row["run_id"],
        experiment=row["experiment"],
        settings=VariantSettings(**settings),
        scores={
            name: ScoreSummary(
                **{part: metrics.get(f"{name}_{part}") for part in ("mean", "median", "ci_low", "ci_high", "defined")}
            )
            for name in scores
        },
        aggregate=aggregate.mean,
        aggregate_summary=aggregate,
        cost_usd=metrics.get("cost_usd"),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens=tokens,
        llm_calls=count("llm_calls"),
        features=count("features"),
        page=variant_page(row["run_id"]),
    )


@contextmanager
def _quiet_artifact_downloads() -> Iterator[None]:
    """MLflow draws one progress bar per download; the leaderboard shows one bar over all runs instead."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _artifact_folder(run_id: str, tracking_uri: str, staging: Path) -> Path:
    """The run's artifact folder: read in place when the store keeps artifacts on this disk (no copy of
    hundreds of MB of tables), else its `tables/` and `plots/` downloaded into `staging`."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    location = urlparse(client.get_run(run_id).info.artifact_uri)
    if location.scheme == "file" and location.netloc in ("", "localhost"):
        return Path(url2pathname(location.path))
    present = {info.path for info in client.list_artifacts(run_id)}
    staging.mkdir(parents=True, exist_ok=True)
    with _quiet_artifact_downloads():
        for folder in (TABLES, PLOTS):
            if folder in present:
                client.download_artifacts(run_id, folder, str(staging))
    return staging


def read_run_artifacts(run_id: str, tracking_uri: str, staging: Path) -> RunArtifacts:
    """Read the run's tables and list its plots; absent artifacts stay empty.

    Args:
        staging: where a remote store's artifacts are downloaded (unused for a local store).
    """
    folder = _artifact_folder(run_id, tracking_uri, staging)
    artifacts = RunArtifacts()
    per_feature = _read_table(folder, PER_FEATURE_TABLE, run_id)
    if per_feature is not None:
        artifacts.features = _feature_records(
            per_feature, run_score_names(read_score_manifest(folder / SCORE_MANIFEST))
        )
    samples = _samples(_read_table(folder, CORPUS_SAMPLES_TABLE, run_id))
    top_examples = _read_table(folder, TOP_EXAMPLES_TABLE, run_id)
    if top_examples is not None:
        artifacts.top_examples = _example_records(top_examples, samples)
    artifacts.rated_samples = _rated_records(
        {
            "responsiveness": _read_table(folder, RATED_SAMPLES_TABLE, run_id),
            "faithfulness": _read_table(folder, RATED_CONTINUATIONS_TABLE, run_id),
        },
        samples,
    )
    plots_dir = folder / PLOTS
    if plots_dir.is_dir():
        artifacts.plots_dir = plots_dir
        for path in sorted(plots_dir.rglob("*.png")):
            parts, size = path.relative_to(plots_dir).parts, png_size(path)
            if size is None:
                continue  # not an image a browser can show
            plot = Plot("/".join(parts), *size)
            if path.parent.parent == folder / FEATURE_PLOTS and parts[1].lstrip("-").isdigit():
                artifacts.feature_plots.setdefault(int(parts[1]), []).append(plot)
            elif len(parts) == 1:
                artifacts.plots.append(plot)
    return artifacts


@dataclass(frozen=True)
class _Table:
    """A `mlflow.log_table` JSON file: column names and rows (lists), already checked for shape."""

    artifact: str  # its path in the run, e.g. PER_FEATURE_TABLE
    run_id: str
    columns: dict[str, int]
    rows: list[list[Any]]

    def column(self, name: str) -> Callable[[list[Any]], Any]:
        """Fast cell getter for a column; an absent optional column reads as None."""
        index = self.columns.get(name)
        return (lambda row: None) if index is None else (lambda row: row[index])

    def features(self) -> list[int]:
        values = list(map(itemgetter(self.columns["feature"]), self.rows))
        if all(type(value) is int for value in values):
            return values
        return [_feature_index(value, self) for value in values]


def _read_table(folder: Path, artifact: str, run_id: str) -> _Table | None:
    path = folder / artifact
    if not path.is_file():
        return None
    where = f"artifact {artifact} of run {run_id}"
    try:
        # NaN and ±Infinity (Python's json writes them) are undefined values: read them as None.
        content = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda constant: None)
        columns, rows = content["columns"], content["data"]
    except (ValueError, KeyError, TypeError) as error:
        raise LeaderboardError(
            f"{where} is not a table written by mlflow.log_table ({error}); re-log it or delete the run"
        ) from error
    missing = [column for column in REQUIRED_COLUMNS[artifact] if column not in columns]
    if missing:
        raise LeaderboardError(
            f"{where} lacks the column(s) {', '.join(missing)} (has: {', '.join(map(str, columns))}); "
            "see docs/leaderboard.md for the columns each table needs"
        )
    width = len(columns)
    for index, row in enumerate(rows):
        if type(row) is not list or len(row) != width:
            raise LeaderboardError(f"{where}: row {index} does not have the {width} columns of the header")
    return _Table(artifact, run_id, {column: index for index, column in enumerate(columns)}, rows)


def _feature_index(value: Any, table: _Table) -> int:
    if type(value) is int:
        return value
    if type(value) is not float or not value.is_integer():
        raise LeaderboardError(
            f"artifact {table.artifact} of run {table.run_id}: feature {value!r} is not an integer feature index"
        )
    return int(value)


def _text(value: Any) -> str | None:
    return value if value is None or type(value) is str else str(value)


def _shown_scores(names: Iterable[str]) -> list[str]:
    """The scores in the order the leaderboard shows them: FADE's, the other scorers' by name (a plugin's
    among them), then Clarity above its floor (present when fade.clarity_floor was on)."""
    found = set(names)
    others = sorted(found - {*FADE_SCORES, CLARITY_ABOVE_FLOOR})
    return [
        *(name for name in FADE_SCORES if name in found),
        *others,
        *([CLARITY_ABOVE_FLOOR] if CLARITY_ABOVE_FLOOR in found else []),
    ]


def _feature_records(table: _Table, scores: set[str]) -> list[dict[str, Any]]:
    """The per-feature table's rows as records; `scores`: which of its columns are scores (the run's manifest)."""
    description, explainer, factor = map(table.column, ("description", "explainer", "faithfulness_factor"))
    names = [
        *FADE_SCORES,
        *_shown_scores(name for name in scores if name in table.columns and name not in FADE_SCORES),
    ]
    score_columns = [(name, table.column(name), table.column(f"{name}_reason")) for name in names]
    return [
        {
            "feature": feature,
            "description": _text(description(row)),
            "explainer": _text(explainer(row)),
            "scores": {
                name: {"value": finite(value(row)), "reason": _text(reason(row))}
                for name, value, reason in score_columns
            },
            "faithfulness_factor": finite(factor(row)),
        }
        for feature, row in zip(table.features(), table.rows)
    ]


# Examples and rated samples are many (tens of thousands per run): they are kept as rows in these column
# orders (the pages' script unpacks them) rather than as one dict each, which is what makes a build fast.
EXAMPLE_FIELDS = ("rank", "sample_id", "text", "tokens", "activations")
RATED_FIELDS = ("stage", "factor", "sample_id", "text", "activation", "rating")


def _pick(table: _Table, fields: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The rows' cells in `fields` order (an absent optional column gives None)."""
    if all(field in table.columns for field in fields):
        return map(itemgetter(*(table.columns[field] for field in fields)), table.rows)
    getters = [table.column(field) for field in fields]
    return (tuple(getter(row) for getter in getters) for row in table.rows)


def _samples(table: _Table | None) -> dict[Any, tuple[Any, Any]]:
    """The run's corpus samples by id: (text, tokens); tokens is None where the run did not log them."""
    return {} if table is None else {sample[0]: sample[1:] for sample in _pick(table, ("sample_id", "text", "tokens"))}


def _example_records(table: _Table, samples: Mapping[Any, tuple[Any, Any]]) -> dict[int, list[tuple[Any, ...]]]:
    """Each feature's top examples (EXAMPLE_FIELDS), a sample's text and tokens read from the run's corpus samples
    (runs logged before that table hold them in each row)."""
    sample_at, text_at, tokens_at, activations_at = (
        EXAMPLE_FIELDS.index(name) for name in ("sample_id", "text", "tokens", "activations")
    )
    grouped: defaultdict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for feature, example in zip(table.features(), _pick(table, EXAMPLE_FIELDS)):
        if example[tokens_at] is None and example[sample_at] in samples:
            example = (*example[:text_at], *samples[example[sample_at]], *example[tokens_at + 1 :])
        tokens, activations = example[tokens_at], example[activations_at]
        if type(tokens) is not list or type(activations) is not list or len(tokens) != len(activations):
            raise LeaderboardError(
                f"artifact {table.artifact} of run {table.run_id}, feature {feature}: tokens (in the row, or the "
                f"sample's in {CORPUS_SAMPLES_TABLE}) and activations must be lists of the same length"
            )
        grouped[feature].append(example)
    return dict(grouped)


def _rated_records(
    tables: Mapping[str, _Table | None], samples: Mapping[Any, tuple[Any, Any]]
) -> dict[int, list[tuple[Any, ...]]]:
    """Each feature's rated samples (RATED_FIELDS) from the tables of each stage, a corpus sample's text read from
    the run's corpus samples (runs logged before those tables hold it in each row, and the continuations in the
    rated samples' table, each row naming its stage)."""
    stage_at, sample_at, text_at = (RATED_FIELDS.index(name) for name in ("stage", "sample_id", "text"))
    grouped: defaultdict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for stage, table in tables.items():
        if table is None:
            continue
        for feature, sample in zip(table.features(), _pick(table, RATED_FIELDS)):
            if sample[stage_at] is None:
                sample = (*sample[:stage_at], stage, *sample[stage_at + 1 :])
            if sample[text_at] is None and sample[sample_at] in samples:
                sample = (*sample[:text_at], samples[sample[sample_at]][0], *sample[text_at + 1 :])
            grouped[feature].append(sample)
    return dict(grouped)


def table_frame(entries: Sequence[VariantEntry], scores: Sequence[str], rank_by: str = AGGREGATE) -> pd.DataFrame:
    """The leaderboard as a flat table (the CSV download): one row per variant, best first (under `rank_by`,
    whose paired comparison with the row above each row carries)."""
    rows = []
    for entry in entries:
        row: dict[str, Any] = {
            "rank": entry.rank,
            "tied": entry.tied,
            "variant": entry.variant,
            "aggregate": entry.aggregate,
        }
        vs_above = entry.ranks[rank_by].vs_above if rank_by in entry.ranks else None
        row.update(
            {
                f"vs_above_{part}": getattr(vs_above, part) if vs_above is not None else None
                for part in ("mean_difference", "features", "p_value", "p_adjusted")
            }
        )
        for name in scores:
            summary = entry.scores[name]
            row.update({f"{name}_{part}": getattr(summary, part) for part in ("mean", "ci_low", "ci_high", "defined")})
        row.update(
            cost_usd=entry.cost_usd,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
            features=entry.features,
            **entry.settings.model_dump(),
            experiment=entry.experiment,
            run_id=entry.run_id,
        )
        rows.append(row)
    return pd.DataFrame(rows)
