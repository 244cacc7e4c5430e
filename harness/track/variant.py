"""One pipeline variant as one MLflow run: descriptions, FADE scores, tables, plots, cost, timings.

The FADE work folder of a variant is `<cache_dir>/runs/<variant key>/fade`; it keeps finished features,
so a resumed run (same key, same MLflow run) recomputes nothing that finished, and LLM answers come from
the LLM cache. Artifacts follow docs/tracking.md (what the leaderboard and other tools read).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.config import HarnessConfig
from harness.track.checks import check_variant
from harness.track.experiment import (
    SCORES,
    SharedStages,
    StageTimer,
    VariantOutcome,
    log_config_artifact,
    score_metrics,
    usage_metrics,
    variant_params,
)
from harness.track.runs import log_dataset, log_metrics, log_params, variant_run

if TYPE_CHECKING:
    from harness.llm import UsageLedger
    from harness.llm.tracing import CallTracer

# Called after each chunk of features with the running metrics and the chunk number; may raise to stop.
ChunkCallback = Callable[[dict[str, float | None], int], None]


def _needs_pool(config: HarnessConfig) -> bool:
    selection = config.explain.selection
    return config.explain.explainer in {"llm", "top-tokens"} and (
        selection.strategy != "top" or selection.contrast_examples > 0
    )


def describe_features(
    config: HarnessConfig, shared: SharedStages, ledger: UsageLedger | None = None, tracer: CallTracer | None = None
) -> tuple[pd.DataFrame, dict[str, float | int]]:
    """The variant's descriptions table and what the explainer's LLM calls used (also appended to `ledger`;
    each call a trace through `tracer`)."""
    from harness.explain import build_feature_records, generate_descriptions, make_explainer
    from harness.llm import LLMClient

    activation_set = shared.activations(config)
    pools = None
    if _needs_pool(config):
        selection = config.explain.selection
        pools = shared.pools(config, num_quantiles=selection.num_quantiles, seed=selection.seed)
    records = build_feature_records(activation_set, pools)
    if not make_explainer(config.explain).needs_llm:
        return generate_descriptions(records, config.explain), {}
    client = LLMClient(config.explain.llm, config.activations.cache_dir, progress=shared.progress)
    client.ledger = ledger
    client.tracer = tracer
    try:
        return generate_descriptions(records, config.explain, client), client.usage.as_dict()
    finally:
        client.close()


def score_with_other_scorers(
    config: HarnessConfig,
    descriptions: pd.DataFrame,
    shared: SharedStages,
    ledger: UsageLedger | None = None,
    tracer: CallTracer | None = None,
):
    """The enabled extra scorers (detection, fuzzing, simulation, embedding, intruder) on the variant's descriptions.

    Their examples come from a pool of their own (with as many least-active samples as they need), so the
    explainer's contrast examples stay as they were. Returns their per-feature table; an LLM rater appends
    what it spends to `ledger` and records each call as a trace through `tracer`.
    """
    from harness.evaluate.scorers import SCORERS, least_active_needed, run_scorers
    from harness.explain import build_feature_records
    from harness.llm import LLMClient
    from harness.raters import build_rater

    activation_set = shared.activations(config)
    pools = shared.pools(config, num_low=max(10, least_active_needed(config.scorers)), seed=config.seed)
    records = build_feature_records(activation_set, pools)
    texts = dict(zip(descriptions["feature"].astype(int), descriptions["description"]))
    needs_llm = any(SCORERS.get(name)().needs_llm for name in config.scorers.enabled)
    corpus_texts = shared.corpus(config)["text"].tolist()
    client = (
        build_rater(config.fade, config.activations.cache_dir, corpus_texts, progress=shared.progress)
        if needs_llm
        else None
    )
    if isinstance(client, LLMClient):
        client.ledger = ledger
        client.tracer = tracer
    try:
        return run_scorers(records, texts, config.scorers, client, progress=shared.progress)
    finally:
        if client is not None:
            client.close()


def _chunks(features: list[int], size: int | None) -> list[list[int]]:
    size = size or max(len(features), 1)
    return [features[start : start + size] for start in range(0, len(features), size)] or [[]]


def evaluate_in_chunks(
    config: HarnessConfig,
    descriptions: pd.DataFrame,
    workdir: Path,
    shared: SharedStages,
    *,
    chunk_size: int | None = None,
    on_chunk: ChunkCallback | None = None,
    ledger: UsageLedger | None = None,
    tracer: CallTracer | None = None,
):
    """FADE on the described features, `chunk_size` at a time (all at once by default).

    After each chunk `on_chunk` gets the running score metrics (the search stage prunes with it).
    Returns the last EvaluationResult (covering every feature), with the clarity floor's cost summed over
    the chunks (each computes the floor of its own features). What the LLM calls spent is in `ledger`.
    """
    from harness.evaluate.pipeline import evaluate_descriptions

    result, floor_cost = None, Counter()
    done: list[int] = []
    for step, chunk in enumerate(_chunks(descriptions["feature"].astype(int).tolist(), chunk_size)):
        done += chunk
        result = evaluate_descriptions(
            config,
            descriptions[descriptions["feature"].isin(done)],
            workdir,
            progress=shared.progress,
            usage_ledger=ledger,
            call_tracer=tracer,
        )
        floor_cost.update(result.floor_cost)
        if on_chunk is not None:
            on_chunk(score_metrics(result.scores, config.tracking.bootstrap_samples, config.seed), step)
    return replace(result, floor_cost=dict(floor_cost))


def floor_metrics(per_feature: pd.DataFrame, config: HarnessConfig) -> dict[str, float | None]:
    """With the clarity floor on: `clarity_above_floor_*` as for a score, and `clarity_beats_floor_share`, the
    share of the features with a verdict whose Clarity beats their floor (docs/clarity-floor.md)."""
    if not config.fade.clarity_floor.enabled:
        return {}
    metrics = score_metrics(per_feature, config.tracking.bootstrap_samples, config.seed, ("clarity_above_floor",))
    metrics.pop("features")
    verdicts = per_feature["clarity_beats_floor"].dropna().astype(bool)
    metrics["clarity_beats_floor_share"] = float(verdicts.mean()) if len(verdicts) else None
    return metrics


def per_feature_table(scores: pd.DataFrame, descriptions: pd.DataFrame) -> pd.DataFrame:
    """Scores with each description's provenance (explainer, hashes, tokens, cost, error)."""
    provenance = descriptions[
        ["feature", "description", "explainer", "settings_hash", "prompt_hash", "prompt_tokens", "completion_tokens", "cost_usd", "error"]
    ]
    table = provenance.merge(scores.drop(columns=["description"]), on="feature", how="left")
    return table.rename(columns={"cost_usd": "explain_cost_usd", "error": "explain_error"})


def _feature_tables(fade_dir: Path, name: str) -> pd.DataFrame:
    """One table kind (e.g. 'natural_ratings') of every feature, with a feature column."""
    frames = []
    for path in sorted((fade_dir / "features").glob(f"*/{name}.csv"), key=lambda p: int(p.parent.name)):
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        frame.insert(0, "feature", int(path.parent.name))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"feature": []})


def rated_samples_table(fade_dir: Path) -> pd.DataFrame:
    """Every rated natural sample and steered continuation, in one table (the leaderboard's drill-down)."""
    natural = _feature_tables(fade_dir, "natural_ratings")
    continuations = _feature_tables(fade_dir, "continuations")
    columns = ["feature", "stage", "factor", "sample_id", "text", "activation", "rating"]
    parts = []
    if len(natural):
        parts.append(natural.assign(stage="responsiveness", factor=np.nan)[columns])
    if len(continuations):
        parts.append(continuations.rename(columns={"continuation": "text"}).assign(stage="faithfulness", activation=np.nan)[columns])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def top_examples_table(shared: SharedStages, config: HarnessConfig) -> pd.DataFrame:
    rows = []
    for feature, examples in shared.activations(config).top_examples.items():
        for rank, example in enumerate(examples, start=1):
            rows.append(
                {
                    "feature": feature,
                    "rank": rank,
                    "sample_id": example.sample_id,
                    "text": example.text,
                    "tokens": list(example.tokens),
                    "activations": [round(float(value), 5) for value in example.activations],
                }
            )
    return pd.DataFrame(rows)


def _log_table(table: pd.DataFrame, artifact_file: str) -> None:
    """A table as MLflow's table JSON ({"columns", "data"}), with NaN written as null."""
    import mlflow

    clean = table.astype(object).where(table.notna(), None)
    payload = {"columns": list(clean.columns), "data": clean.values.tolist()}
    mlflow.log_text(json.dumps(payload, default=_jsonable), artifact_file)


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

    figure, axes = plt.subplots(1, len(SCORES), figsize=(4 * len(SCORES), 3.2), constrained_layout=True)
    for axis, score in zip(axes, SCORES):
        values = per_feature[score].dropna().astype(float)
        axis.hist(values, bins=np.linspace(0, 1, 11), color="#4C72B0", edgecolor="white")
        axis.set_title(f"{score} (n={len(values)}/{len(per_feature)})")
        axis.set_xlim(0, 1)
    axes[0].set_ylabel("features")
    figure.suptitle(f"{title}: score distributions")
    mlflow.log_figure(figure, "plots/score_distributions.png")
    plt.close(figure)

    angles = np.linspace(0, 2 * np.pi, len(SCORES), endpoint=False)
    means = [metrics.get(f"{score}_mean") or 0.0 for score in SCORES]
    figure = plt.figure(figsize=(4.5, 4.5))
    axis = figure.add_subplot(polar=True)
    axis.plot(np.append(angles, angles[0]), np.append(means, means[0]), color="#C44E52")
    axis.fill(np.append(angles, angles[0]), np.append(means, means[0]), color="#C44E52", alpha=0.25)
    axis.set_xticks(angles, SCORES)
    axis.set_ylim(0, 1)
    axis.set_title(f"{title}: mean scores")
    mlflow.log_figure(figure, "plots/radar_means.png")
    plt.close(figure)


def _stage(tracer: CallTracer | None, name: str) -> CallTracer | None:
    return tracer.for_stage(name) if tracer is not None else None


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
) -> VariantOutcome:
    """Run one variant into its MLflow run (new, resumed, or skipped when already finished).

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
    """
    import mlflow
    from mlflow import MlflowClient

    from harness.llm import Usage, UsageLedger, parse_metrics
    from harness.llm.tracing import CallTracer

    check = partial(check_variant, config, shared)
    with variant_run(experiment_id, key, name, role=role, parent_run_id=parent_run_id, force=force, check=check) as tracked:
        if on_run is not None:
            on_run(tracked.run_id)
        if tracked.skipped:
            metrics = MlflowClient().get_run(tracked.run_id).data.metrics
            return VariantOutcome(name, tracked.run_id, skipped=True, metrics=dict(metrics))
        timer = StageTimer()
        log_params(variant_params(config))
        log_config_artifact(config)
        workdir = Path(config.activations.cache_dir) / "runs" / key
        ledger = UsageLedger(workdir / f"usage-{tracked.run_id}.jsonl")
        # Every LLM call also an MLflow trace of this run (variant_run writes them out before the run ends).
        tracer = CallTracer(tracked.run_id, experiment_id) if config.tracking.traces else None
        with timer.stage("activations"):
            corpus = shared.corpus(config)
            shared.activations(config)
        log_dataset(corpus, config.corpus.source, context="corpus")
        with timer.stage("explain"):
            descriptions, _ = describe_features(config, shared, ledger.stage("explain"), _stage(tracer, "explain"))
        with timer.stage("evaluate"):
            result = evaluate_in_chunks(
                config,
                descriptions,
                workdir / "fade",
                shared,
                chunk_size=chunk_size,
                on_chunk=on_chunk,
                ledger=ledger.stage("fade"),
                tracer=_stage(tracer, "fade"),
            )
        per_feature = per_feature_table(result.scores, descriptions)
        cost = result.floor_cost  # the clarity floor's share of the evaluate stage, when it ran
        floor_cost = {"clarity_floor_requests": cost["requests"], "time_clarity_floor_s": cost["seconds"]} if cost else {}
        if config.scorers.enabled:
            with timer.stage("scorers"):
                scored = score_with_other_scorers(
                    config, descriptions, shared, ledger.stage("scorers"), _stage(tracer, "scorers")
                )
            per_feature = per_feature.merge(scored, on="feature", how="left")
        # What every process of this run spent, a killed one's included (its ledger survives; its memory not).
        spent = ledger.by_stage()
        total_usage = sum(spent.values(), Usage()).as_dict()
        metrics = (
            score_metrics(per_feature, config.tracking.bootstrap_samples, config.seed, (*SCORES, *config.scorers.enabled))
            | floor_metrics(per_feature, config)
            | floor_cost
            | usage_metrics(total_usage)
            | parse_metrics(total_usage)
            | {
                "explain_cost_usd": spent.get("explain", Usage()).cost_usd,
                "rater_cost_usd": sum(spent.get(stage, Usage()).cost_usd for stage in ("fade", "scorers")),
            }
            | {"tokens": total_usage.get("prompt_tokens", 0) + total_usage.get("completion_tokens", 0)}
            | timer.as_metrics()
        )
        log_metrics(metrics)
        _log_table(per_feature, "tables/per_feature.json")
        _log_table(descriptions, "tables/descriptions.json")
        _log_table(top_examples_table(shared, config), "tables/top_examples.json")
        _log_table(rated_samples_table(workdir / "fade"), "tables/rated_samples.json")
        log_score_plots(per_feature, metrics, name)
        for feature in per_feature["feature"].head(config.tracking.plot_features).tolist():
            folder = workdir / "fade" / "features" / str(feature)
            for plot in sorted(folder.glob("*.png")):
                mlflow.log_artifact(str(plot), f"plots/features/{feature}")
        return VariantOutcome(name, tracked.run_id, skipped=False, resumed=tracked.resumed, metrics=metrics, per_feature=per_feature)
