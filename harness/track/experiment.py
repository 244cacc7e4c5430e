"""`harness run`: every variant of a config through corpus -> activations -> explain -> FADE, one MLflow run each.

Variants that share the subject model, corpus, site and activation settings share one model load and one
activation pass. Each variant's FADE results are persisted per feature in a work folder named after the
variant's settings hash, so an interrupted run resumes into the same MLflow run and recomputes nothing
that finished; a finished variant is recognised and skipped unless forced.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

import harness
from harness.config import HarnessConfig, dump_config, expand_variants, result_fingerprint
from harness.track.agreement import log_scorer_agreement
from harness.track.runs import log_metrics, log_params, variant_run
from harness.track.store import ensure_experiment, resolve_tracking_uri

SCORES = ("clarity", "responsiveness", "purity", "faithfulness")


@dataclass
class VariantOutcome:
    """What one variant produced (or that it was skipped because a finished run exists)."""

    name: str
    run_id: str
    skipped: bool
    resumed: bool = False
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_feature: pd.DataFrame | None = None


class StageTimer:
    """Wall time per stage, logged as `time_<stage>_s`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def as_metrics(self) -> dict[str, float]:
        return {f"time_{name}_s": value for name, value in self.seconds.items()}


class SharedStages:
    """Model, corpus, site and activations, computed once per process for every variant that shares them."""

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
        self._memo: dict[tuple[str, str], Any] = {}

    def _once(self, kind: str, key: str, build: Callable[[], Any]) -> Any:
        if (kind, key) not in self._memo:
            self._memo[(kind, key)] = build()
        return self._memo[(kind, key)]

    def model(self, config: HarnessConfig):
        from harness.model import load_subject_model

        return self._once("model", config.model.fingerprint(), lambda: load_subject_model(config.model))

    def corpus(self, config: HarnessConfig) -> pd.DataFrame:
        from harness.corpus import load_corpus

        key = config.corpus.fingerprint() + config.model.fingerprint()
        return self._once("corpus", key, lambda: load_corpus(config.corpus, self.model(config).tokenizer))

    def site(self, config: HarnessConfig):
        from harness.sites import build_site

        key = config.site.fingerprint() + config.model.fingerprint()
        return self._once("site", key, lambda: build_site(config.site, self.model(config)))

    def activations(self, config: HarnessConfig):
        from harness.activations import extract_activations

        return self._once(
            "activations",
            self._activations_key(config),
            lambda: extract_activations(
                self.model(config), self.site(config), self.corpus(config), config.activations, progress=self.progress
            ),
        )

    def pools(self, config: HarnessConfig, **settings: Any):
        """The features' activation pools (`pool_examples` with `settings`): one more pass over the corpus,
        so done once for every variant that asks for the same pools."""
        from harness.activations import pool_examples

        key = self._activations_key(config) + json.dumps(settings, sort_keys=True)
        return self._once(
            "pools",
            key,
            lambda: pool_examples(
                self.model(config), self.site(config), self.corpus(config), self.activations(config),
                config.activations, **settings,
            ),  # fmt: skip
        )

    @staticmethod
    def _activations_key(config: HarnessConfig) -> str:
        return "".join(part.fingerprint() for part in (config.model, config.corpus, config.site, config.activations))


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


def score_metrics(
    per_feature: pd.DataFrame, bootstrap_samples: int, seed: int, scores: tuple[str, ...] = SCORES
) -> dict[str, float | None]:
    """Mean, median, bootstrap 95% CI and defined share of each score, named as the leaderboard reads them."""
    from harness.evaluate.scores import summarise

    metrics: dict[str, float | None] = {"features": float(len(per_feature))}
    for score in scores:
        values = [None if pd.isna(value) else float(value) for value in per_feature.get(score, pd.Series(dtype=float))]
        summary = summarise(values, num_resamples=bootstrap_samples, seed=seed)
        metrics |= {
            f"{score}_mean": summary["mean"],
            f"{score}_median": summary["median"],
            f"{score}_ci_low": summary["ci_low"],
            f"{score}_ci_high": summary["ci_high"],
            f"{score}_defined": summary["share_defined"],
        }
    return metrics


def usage_metrics(usage: dict[str, float | int], prefix: str = "llm") -> dict[str, float]:
    """LLM accounting as metrics: calls, cache hits, retries, failures, tokens, cost."""
    names = {
        "calls": f"{prefix}_calls",
        "requests": f"{prefix}_requests",
        "cache_hits": f"{prefix}_cache_hits",
        "retries": f"{prefix}_retries",
        "failures": f"{prefix}_failures",
        "prompt_tokens": "prompt_tokens",
        "completion_tokens": "completion_tokens",
        "cost_usd": "cost_usd",
    }
    return {metric: float(usage.get(key, 0) or 0) for key, metric in names.items()}


def variant_params(config: HarnessConfig) -> dict[str, Any]:
    """Every setting of the variant, plus provenance (the config refuses secrets; log_params redacts any left)."""
    params = config.model_dump(mode="json", exclude={"variants", "search", "tracking"})
    params["rater"] = config.fade.rater_label
    params["package_version"] = harness.__version__
    params["git_commit"] = git_commit()
    return params


def run_experiment(
    config: HarnessConfig,
    *,
    force: bool = False,
    progress: bool = True,
) -> list[VariantOutcome]:
    """Run (or resume, or skip) every variant of `config`, each as one MLflow run.

    Several variants are nested under a parent "comparison" run named after the config; when they are
    done it gets the rank correlation of every pair of scores across them (`log_scorer_agreement`).

    Args:
        config: the validated config (its `variants` section declares the variants).
        force: re-run variants that already have a finished run.
        progress: show progress bars.
    """
    from harness.track.checks import check_variants
    from harness.track.variant import track_variant

    variants = expand_variants(config)
    tracking_uri = resolve_tracking_uri(config.tracking.uri, config.tracking.store_dir)
    experiment_id = ensure_experiment(config.tracking.experiment, tracking_uri)
    shared = SharedStages(progress=progress)
    outcomes: list[VariantOutcome] = []
    keys = [result_fingerprint(variant) for _, variant in variants]
    parent = (
        variant_run(
            experiment_id, _comparison_key(keys), config.name, role="comparison", force=force,
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
                )
            )
        if parent_run is not None and not parent_run.skipped:
            log_metrics({"variants_finished": float(len(outcomes))})
            log_scorer_agreement(pd.DataFrame([outcome.metrics for outcome in outcomes]))
            _log_paired(config, variants, outcomes, tracking_uri)
    return outcomes


def _log_paired(config: HarnessConfig, variants: list, outcomes: list[VariantOutcome], tracking_uri: str) -> None:
    """Each variant vs the one ranked above it, by a paired test, to the comparison run (docs/tracking.md)."""
    from harness.track.compare import feature_scores, log_paired_comparisons, site_params

    rows = [
        {"variant": outcome.name, "run_id": outcome.run_id, **site_params(variant),
         **{key: value for key, value in outcome.metrics.items() if value is not None}}
        for (_, variant), outcome in zip(variants, outcomes)
    ]
    log_paired_comparisons(
        pd.DataFrame(rows), feature_scores([outcome.run_id for outcome in outcomes], tracking_uri),
        alpha=config.tracking.paired_alpha, min_features=config.tracking.paired_min_features,
    )  # fmt: skip


def _comparison_key(variant_keys: list[str]) -> str:
    joined = ",".join(sorted(variant_keys))
    return "comparison-" + hashlib.sha256(joined.encode()).hexdigest()[:16]


def log_config_artifact(config: HarnessConfig) -> None:
    import mlflow

    mlflow.log_text(dump_config(config), "config.yaml")
