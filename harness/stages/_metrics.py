"""A variant's run-level score metrics (mean, median, CI, defined share), named as the leaderboard reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from harness.score_names import CLARITY_ABOVE_FLOOR, FADE_SCORES

if TYPE_CHECKING:
    from harness.config import HarnessConfig
    from harness.llm import UsageLedger
    from harness.stages._shared import StageTimer


def score_metrics(
    per_feature: pd.DataFrame, bootstrap_samples: int, seed: int, scores: tuple[str, ...] = FADE_SCORES
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


def pooled_metrics(per_feature: pd.DataFrame, scorers: tuple[str, ...]) -> dict[str, float | None]:
    """`<scorer>_pooled`: delphi's headline balanced accuracy, every answered example of every feature pooled, for
    each scorer whose table has the delphi convention's counts (beside `<scorer>_mean`, our per-feature mean)."""
    from harness.evaluate.scorers import COUNT_COLUMNS, pooled_balanced_accuracy

    metrics: dict[str, float | None] = {}
    for scorer in scorers:
        columns = {f"{scorer}_{name}": name for name in COUNT_COLUMNS}
        if set(columns) <= set(per_feature.columns):
            rows = per_feature[list(columns)].rename(columns=columns).dropna().to_dict("records")
            metrics[f"{scorer}_pooled"] = pooled_balanced_accuracy(rows)
    return metrics


def floor_metrics(per_feature: pd.DataFrame, config: HarnessConfig) -> dict[str, float | None]:
    """With the clarity floor on: `clarity_above_floor_*` as for a score, and `clarity_beats_floor_share`, the
    share of the features with a verdict whose Clarity beats their floor (docs/clarity-floor.md)."""
    if not config.fade.clarity_floor.enabled:
        return {}
    metrics = score_metrics(per_feature, config.tracking.bootstrap_samples, config.seed, (CLARITY_ABOVE_FLOOR,))
    metrics.pop("features")
    verdicts = per_feature["clarity_beats_floor"].dropna().astype(bool)
    metrics["clarity_beats_floor_share"] = float(verdicts.mean()) if len(verdicts) else None
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


def variant_metrics(
    per_feature: pd.DataFrame,
    config: HarnessConfig,
    ledger: UsageLedger | None,
    timer: StageTimer,
    *,
    floor_cost: dict[str, float],
    llm_failed: int,
) -> dict[str, float | None]:
    """Every run-level metric of a variant: scores, the aggregate, pooled and floor metrics, what its LLM calls
    spent (from the run's ledger: every process's, a killed one's included), stage times."""
    from harness.evaluate.aggregate import aggregate_metrics, default_weights
    from harness.llm import Usage, parse_metrics

    spent = ledger.by_stage() if ledger is not None else {}
    total = sum(spent.values(), Usage()).as_dict()
    floor = (
        {"clarity_floor_requests": floor_cost["requests"], "time_clarity_floor_s": floor_cost["seconds"]}
        if floor_cost
        else {}
    )
    scorers = tuple(config.scorers.enabled)
    samples, seed = config.tracking.bootstrap_samples, config.seed
    return (
        score_metrics(per_feature, samples, seed, (*FADE_SCORES, *scorers))
        | aggregate_metrics(per_feature, default_weights([per_feature]), num_resamples=samples, seed=seed)
        | pooled_metrics(per_feature, scorers)
        | floor_metrics(per_feature, config)
        | floor
        | usage_metrics(total)
        | parse_metrics(total)
        | {
            "explain_cost_usd": spent.get("explain", Usage()).cost_usd,
            "rater_cost_usd": sum(spent.get(stage, Usage()).cost_usd for stage in ("fade", "scorers")),
        }
        | {"tokens": total.get("prompt_tokens", 0) + total.get("completion_tokens", 0)}
        | timer.as_metrics()
        | {"features_llm_failed": float(llm_failed)}
    )
