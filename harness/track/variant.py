"""One pipeline variant as one MLflow run: descriptions, FADE scores, tables, plots, cost, timings.

The FADE work folder of a variant is `<cache_dir>/runs/<variant key>/fade`; it keeps finished features,
so a resumed run (same key, same MLflow run) recomputes nothing that finished, and LLM answers come from
the LLM cache. The stages themselves run through `harness.stages`; this module logs what they produce.
Artifacts follow docs/tracking.md (what the leaderboard and other tools read), at the paths of
`harness.artifacts`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import harness
from harness import artifacts
from harness.config import HarnessConfig, control_counterpart, dump_config, result_fingerprint
from harness.errors import LLMError
from harness.score_names import FADE_SCORES, Reason
from harness.secrets import redact_text
from harness.stages import (
    ChunkCallback,
    Lead,
    SharedStages,
    VariantObserver,
    run_ledger,
    run_variant,
    sample_tables,
    variant_workdir,
)
from harness.track._checks import check_variant
from harness.track.controls import CONTROL_OF_TAG, CONTROL_TAG
from harness.track.manifest import log_score_manifest
from harness.track.runs import (
    MAX_ERROR_TAG_LENGTH,
    PARTIAL_TAG,
    log_dataset,
    log_metrics,
    log_params,
    variant_run,
)

if TYPE_CHECKING:
    from harness.llm.tracing import CallTracer


@dataclass
class VariantOutcome:
    """What one variant produced (or that it was skipped because a finished run exists)."""

    name: str
    run_id: str
    skipped: bool
    resumed: bool = False
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_feature: pd.DataFrame | None = None
    llm_failed: list[int] = field(default_factory=list)  # features whose LLM calls failed (a --keep-going run)


def git_commit() -> str | None:
    """The checkout's commit, when the package runs from a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(harness.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def variant_params(config: HarnessConfig) -> dict[str, Any]:
    """Every setting of the variant, plus provenance (the config refuses secrets; log_params redacts any left)."""
    from harness.raters import rater_label

    params = config.model_dump(mode="json", exclude={"variants", "search", "tracking"})
    params["rater"] = rater_label(config.fade)
    params["package_version"] = harness.__version__
    params["git_commit"] = git_commit()
    return params


def control_tags(config: HarnessConfig) -> dict[str, str]:
    """A control's kind and the variant key of the variant it controls for (the controls table pairs them)."""
    counterpart = control_counterpart(config)
    if counterpart is None:
        return {}
    kind, controlled = counterpart
    return {CONTROL_TAG: kind, CONTROL_OF_TAG: result_fingerprint(controlled)}


def log_config_artifact(config: HarnessConfig) -> None:
    import mlflow

    mlflow.log_text(dump_config(config), artifacts.CONFIG_FILE)


def _log_table(table: pd.DataFrame, artifact_file: str) -> None:
    """A table as MLflow's table JSON ({"columns", "data"}), with NaN written as null; no spaces after separators
    (at scale the tables are most of the store)."""
    import mlflow

    clean = table.astype(object).where(table.notna(), None)
    payload = {"columns": list(clean.columns), "data": clean.values.tolist()}
    mlflow.log_text(json.dumps(payload, default=_jsonable, separators=(",", ":")), artifact_file)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to a table artifact")


def log_score_plots(per_feature: pd.DataFrame, metrics: dict[str, float | None], title: str) -> None:
    """Score distributions and the radar of the means, as run plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    figure, axes = plt.subplots(1, len(FADE_SCORES), figsize=(4 * len(FADE_SCORES), 3.2), constrained_layout=True)
    for axis, score in zip(axes, FADE_SCORES):
        values = per_feature[score].dropna().astype(float)
        axis.hist(values, bins=np.linspace(0, 1, 11), color="#4C72B0", edgecolor="white")
        axis.set_title(f"{score} (n={len(values)}/{len(per_feature)})")
        axis.set_xlim(0, 1)
    axes[0].set_ylabel("features")
    figure.suptitle(f"{title}: score distributions")
    mlflow.log_figure(figure, artifacts.SCORE_DISTRIBUTIONS_PLOT)
    plt.close(figure)

    angles = np.linspace(0, 2 * np.pi, len(FADE_SCORES), endpoint=False)
    means = [metrics.get(f"{score}_mean") or 0.0 for score in FADE_SCORES]
    figure = plt.figure(figsize=(4.5, 4.5))
    axis = figure.add_subplot(polar=True)
    axis.plot(np.append(angles, angles[0]), np.append(means, means[0]), color="#C44E52")
    axis.fill(np.append(angles, angles[0]), np.append(means, means[0]), color="#C44E52", alpha=0.25)
    axis.set_xticks(angles, FADE_SCORES)
    axis.set_ylim(0, 1)
    axis.set_title(f"{title}: mean scores")
    mlflow.log_figure(figure, artifacts.RADAR_MEANS_PLOT)
    plt.close(figure)


def _failed_note(failed: list[int], per_feature: pd.DataFrame) -> str:
    """How many features failed and the first error, for the run's error or partial tag."""
    from harness.explain import is_llm_failure

    errors = [
        error
        for column in ("llm_error", "explain_error")
        if column in per_feature
        for error in per_feature.loc[per_feature["feature"].isin(failed), column].dropna().astype(str)
        if column == "llm_error" or is_llm_failure(error)
    ]
    first = f"; the first: {redact_text(errors[0])}" if errors else ""
    return (
        f"LLM calls failed for good on {len(failed)} of {len(per_feature)} features "
        f"({', '.join(map(str, failed[:10]))}{' ...' if len(failed) > 10 else ''}): their scores say "
        f"{Reason.LLM_FAILED}{first}"
    )


class TrackingObserver(VariantObserver):
    """Tracking as the pipeline's observer: every LLM call a trace of the run, the corpus as the run's dataset,
    FADE's running scores to the search's pruning callback."""

    def __init__(self, tracer: CallTracer | None, corpus_name: str, on_chunk: ChunkCallback | None = None) -> None:
        self._tracer = tracer
        self._corpus_name = corpus_name
        self._on_chunk = on_chunk

    def tracer(self, stage: str) -> CallTracer | None:
        return self._tracer.for_stage(stage) if self._tracer is not None else None

    def corpus_loaded(self, corpus: pd.DataFrame) -> None:
        log_dataset(corpus, self._corpus_name, context="corpus")

    def evaluated_chunk(self, scores: pd.DataFrame, step: int) -> None:
        if self._on_chunk is not None:
            self._on_chunk(scores, step)


def track_variant(
    name: str,
    config: HarnessConfig,
    key: str,
    *,
    experiment_id: str,
    parent_run_id: str | None,
    shared: SharedStages,
    force: bool = False,
    role: str = "variant",
    chunk_size: int | None = None,
    on_chunk: ChunkCallback | None = None,
    on_run: Callable[[str], None] | None = None,
    lead: Lead | None = None,
    keep_going: bool = False,
) -> VariantOutcome:
    """Run one variant (harness.stages.run_variant) into its MLflow run (new, resumed, or skipped when already
    finished), and log what it produced.

    Args:
        name: the run name.
        config: the variant's whole config.
        key: its settings hash (result_fingerprint).
        experiment_id, parent_run_id: where the run goes.
        shared: model/corpus/site/activations shared with the other variants.
        force: re-run even if a finished run exists.
        role: "variant" or "trial".
        chunk_size, on_chunk: evaluate features in chunks and report running metrics (search pruning).
        on_run: called with the run id as soon as the run is open (the search stores it on the trial).
        lead: under `accelerate launch`, tells the other processes what to compute (harness.stages._follow).
        keep_going: when LLM calls of some features failed for good, finish the run anyway, marked partial
            (PARTIAL_TAG, metric `features_llm_failed`; the next run of the key resumes it), instead of
            failing it. Either way those features' scores say Reason.LLM_FAILED and the tables are logged.

    Raises:
        LLMError: LLM calls of some features failed for good (and not `keep_going`).
    """
    import mlflow
    from mlflow import MlflowClient

    from harness.llm.tracing import CallTracer

    lead = lead or Lead()
    check = partial(check_variant, config, shared)
    with variant_run(
        experiment_id, key, name, role=role, parent_run_id=parent_run_id, force=force, check=check
    ) as tracked:
        if on_run is not None:
            on_run(tracked.run_id)
        lead.start(tracked.skipped, tracked.run_id)
        if tracked.skipped:
            metrics = MlflowClient().get_run(tracked.run_id).data.metrics
            return VariantOutcome(name, tracked.run_id, skipped=True, metrics=dict(metrics))
        log_params(variant_params(config))
        mlflow.set_tags(control_tags(config))
        log_config_artifact(config)
        # Every LLM call also an MLflow trace of this run (variant_run writes them out before the run ends).
        tracer = (
            CallTracer(tracked.run_id, experiment_id, sample=config.tracking.trace_sample)
            if config.tracking.traces
            else None
        )
        result = run_variant(
            config,
            key,
            shared,
            run_ledger(variant_workdir(config, key), tracked.run_id),
            observer=TrackingObserver(tracer, config.corpus.source, on_chunk),
            team=lead,
            chunk_size=chunk_size,
        )
        assert result.per_feature is not None and result.metrics is not None and result.llm_failed is not None
        per_feature, metrics, failed = result.per_feature, result.metrics, result.llm_failed
        log_metrics(metrics)
        _log_table(per_feature, artifacts.PER_FEATURE_TABLE)
        log_score_manifest(config)
        _log_table(result.descriptions, artifacts.DESCRIPTIONS_TABLE)
        fade_dir = result.evaluation.output_dir
        for artifact, table in sample_tables(shared, config, fade_dir).items():
            _log_table(table, artifact)
        log_score_plots(per_feature, metrics, name)
        for feature in per_feature["feature"].head(config.tracking.plot_features).tolist():
            for plot in sorted((fade_dir / "features" / str(feature)).glob("*.png")):
                mlflow.log_artifact(str(plot), f"{artifacts.FEATURE_PLOTS}/{feature}")
        if failed:
            note = _failed_note(failed, per_feature)
            if not keep_going:
                raise LLMError(
                    f"{note}. The other features are kept: run the same command again to compute only these "
                    "(the answers that came are cached), or pass --keep-going to finish the run marked partial"
                )
            mlflow.set_tag(PARTIAL_TAG, note[:MAX_ERROR_TAG_LENGTH])
        return VariantOutcome(
            name,
            tracked.run_id,
            skipped=False,
            resumed=tracked.resumed,
            metrics=metrics,
            per_feature=per_feature,
            llm_failed=failed,
        )
