"""`harness run`: every variant of a config through corpus -> activations -> explain -> FADE, one MLflow run each.

Variants that share the subject model, corpus, site and activation settings share one model load and one
activation pass. Each variant's FADE results are persisted per feature in a work folder named after the
variant's settings hash, so an interrupted run resumes into the same MLflow run and recomputes nothing
that finished; a finished variant is recognised and skipped unless forced.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import pandas as pd

from harness.config import HarnessConfig, expand_variants, result_fingerprint
from harness.files import check_writable
from harness.stages import Lead, SharedStages, follow_variants
from harness.track._checks import check_variants
from harness.track.agreement import log_scorer_agreement
from harness.track.compare import load_comparison, log_comparison
from harness.track.runs import MAX_ERROR_TAG_LENGTH, PARTIAL_TAG, log_metrics, log_params, variant_run
from harness.track.store import check_store_writable, ensure_experiment, resolve_tracking_uri
from harness.track.variant import VariantOutcome, track_variant


def run_experiment(
    config: HarnessConfig,
    *,
    force: bool = False,
    progress: bool = True,
    keep_going: bool = False,
) -> list[VariantOutcome]:
    """Run (or resume, or skip) every variant of `config`, each as one MLflow run.

    Several variants are nested under a parent "comparison" run named after the config; when they are
    done it gets the rank correlation of every pair of scores across them (`log_scorer_agreement`).

    Args:
        config: the validated config (its `variants` section declares the variants).
        force: re-run variants that already have a finished run.
        progress: show progress bars.
        keep_going: a variant some of whose features' LLM calls failed finishes marked partial instead of
            failing (track_variant); the next run resumes it.

    Under `accelerate launch` the main process does all of that and returns the outcomes; the others compute
    their share of each variant's activation pass and FADE features and return [] (harness.stages._follow).
    """
    from harness.activations import current_processes

    processes = current_processes()
    if not processes.is_main:  # under `accelerate launch`: compute this process's share, track nothing
        follow_variants(config, processes)
        return []
    variants = expand_variants(config)
    lead = Lead(processes, len(variants))
    try:
        return _lead_variants(config, variants, lead, force=force, progress=progress, keep_going=keep_going)
    except BaseException as error:
        lead.fail(error)
        raise


def _lead_variants(
    config: HarnessConfig,
    variants: list[tuple[str, HarnessConfig]],
    lead: Lead,
    *,
    force: bool,
    progress: bool,
    keep_going: bool,
) -> list[VariantOutcome]:
    tracking_uri = resolve_tracking_uri(config.tracking.uri, config.tracking.store_dir)
    check_store_writable(tracking_uri)  # before any model load or LLM call
    for cache_dir in {variant.activations.cache_dir for _, variant in variants}:
        check_writable(Path(cache_dir), "caches and results (activations.cache_dir)")
    experiment_id = ensure_experiment(config.tracking.experiment, tracking_uri)
    shared = SharedStages(progress=progress)
    outcomes: list[VariantOutcome] = []
    keys = [result_fingerprint(variant) for _, variant in variants]
    parent = (
        variant_run(
            experiment_id,
            _comparison_key(keys),
            config.name,
            role="comparison",
            force=force,
            check=partial(check_variants, [variant for _, variant in variants], shared),
        )  # fmt: skip
        if len(variants) > 1
        else nullcontext(None)
    )
    with parent as parent_run:
        if parent_run is not None and not parent_run.skipped:
            log_params({"variants": len(variants), "config_name": config.name})
        for (name, variant), key in zip(variants, keys):
            outcomes.append(
                track_variant(
                    name,
                    variant,
                    key,
                    experiment_id=experiment_id,
                    parent_run_id=parent_run.run_id if parent_run is not None else None,
                    shared=shared,
                    force=force,
                    lead=lead,
                    keep_going=keep_going,
                )
            )
        if parent_run is not None and not parent_run.skipped:
            log_metrics({"variants_finished": float(len(outcomes))})
            log_scorer_agreement(pd.DataFrame([outcome.metrics for outcome in outcomes]))
            _log_comparison(config, outcomes, tracking_uri)
            unfinished = [outcome.name for outcome in outcomes if outcome.llm_failed]
            if unfinished:  # compared on partial results: the next run resumes it too
                import mlflow

                note = f"variants finished partial: {', '.join(unfinished)}"
                mlflow.set_tag(PARTIAL_TAG, note[:MAX_ERROR_TAG_LENGTH])
    return outcomes


def _log_comparison(config: HarnessConfig, outcomes: list[VariantOutcome], tracking_uri: str) -> None:
    """The comparison of the variants (paired tests, controls, feature labels) to the comparison run, read from
    the store as `harness compare` reads it (docs/tracking.md)."""
    comparison = load_comparison(
        [config.tracking.experiment], tracking_uri, run_ids=[outcome.run_id for outcome in outcomes],
        alpha=config.tracking.paired_alpha, min_features=config.tracking.paired_min_features,
    )  # fmt: skip
    log_comparison(comparison)


def _comparison_key(variant_keys: list[str]) -> str:
    joined = ",".join(sorted(variant_keys))
    return "comparison-" + hashlib.sha256(joined.encode()).hexdigest()[:16]
