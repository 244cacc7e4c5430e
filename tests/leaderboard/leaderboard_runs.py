"""Real MLflow variant runs with synthetic numbers, written as the tracking contract says.

Used by the leaderboard tests and by benchmarks/bench_leaderboard.py. The run-level metrics are computed
from the per-feature rows written beside them (means, medians, bootstrap intervals, defined shares), so the
site's numbers can be checked against the tables.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from harness.config import HarnessConfig
from harness.score_names import FADE_SCORES
from harness.track.runs import log_metrics, log_params, variant_run

WORDS = (
    "the river bank was quiet when she opened the ledger and counted every coin twice before dawn "
    "def parse ( self , text ) : return json . loads ( text ) # load the config file "
    "in 1848 the revolution spread across europe ; prices rose and the harvest failed again"
).split()
CONCEPTS = (
    "money and finance",
    "Python function definitions",
    "dates in the 19th century",
    "water and rivers",
    "punctuation inside code",
    "counting and numbers",
    "European history",
    "file input and output",
)


@dataclass
class SyntheticVariant:
    """One variant to log: its name, config overrides (dotted keys) and how good its descriptions are."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    quality: float = 0.6
    cost_usd: float | None = 0.01
    descriptions: Mapping[int, str] = field(default_factory=dict)
    sample_texts: Mapping[int, str] = field(default_factory=dict)


def config_params(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The default harness config as a nested dict, with dotted-key overrides applied."""
    config = HarnessConfig().model_dump(mode="json")
    for dotted, value in overrides.items():
        node = config
        *parents, last = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return config


def feature_rows(variant: SyntheticVariant, features: Sequence[int], rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for feature in features:
        clarity, responsiveness, purity = np.clip(variant.quality + rng.normal(0, 0.15, 3), 0, 1)
        row: dict[str, Any] = {
            "feature": feature,
            "description": variant.descriptions.get(feature, _description(feature, variant.quality)),
            "explainer": variant.overrides.get("explain.explainer", "llm"),
            "clarity": float(clarity),
            "responsiveness": float(responsiveness),
            "purity": float(purity),
            "faithfulness": None,
            "clarity_reason": None,
            "responsiveness_reason": None,
            "purity_reason": None,
            "faithfulness_reason": None,
            "faithfulness_factor": None,
        }
        if feature % 7 == 3:
            row.update(
                responsiveness=None,
                purity=None,
                responsiveness_reason="no_rated_2_samples",
                purity_reason="no_rated_2_samples",
            )
        if row["clarity"] >= 0.5 and (row["responsiveness"] or 0) >= 0.5:
            row["faithfulness"] = float(np.clip(variant.quality - 0.3 + rng.normal(0, 0.1), 0, 1))
            row["faithfulness_factor"] = float(rng.choice([-50.0, -10.0, 10.0, 50.0]))
        else:
            row["faithfulness_reason"] = "below_gini_threshold"
        rows.append(row)
    return rows


def _description(feature: int, quality: float) -> str:
    concept = CONCEPTS[feature % len(CONCEPTS)]
    if quality < 0.35:
        return (
            f"{WORDS[feature % len(WORDS)]}, {WORDS[(feature * 7) % len(WORDS)]}, {WORDS[(feature * 13) % len(WORDS)]}"
        )
    if quality < 0.6:
        return f"{concept}"
    return f"Fires on {concept}, strongest on the token that names it; weaker on related context"


def score_metrics(rows: Sequence[Mapping[str, Any]], rng: np.random.Generator) -> dict[str, float | None]:
    """Per score: mean, median, bootstrap 95% CI of the mean, share defined (absent when never defined)."""
    metrics: dict[str, float | None] = {}
    for score in FADE_SCORES:
        values = np.asarray([row[score] for row in rows if row[score] is not None], dtype=float)
        metrics[f"{score}_defined"] = len(values) / len(rows)
        if len(values):
            resampled = rng.choice(values, size=(200, len(values))).mean(axis=1)
            metrics.update(
                {
                    f"{score}_mean": float(values.mean()),
                    f"{score}_median": float(np.median(values)),
                    f"{score}_ci_low": float(np.percentile(resampled, 2.5)),
                    f"{score}_ci_high": float(np.percentile(resampled, 97.5)),
                }
            )
    return metrics


def example_rows(
    variant: SyntheticVariant, features: Sequence[int], rng: np.random.Generator, examples: int, tokens: int
) -> list[dict[str, Any]]:
    rows = []
    for feature in features:
        for rank in range(1, examples + 1):
            start = int(rng.integers(0, len(WORDS) - tokens))
            words = [(" " if i else "") + word for i, word in enumerate(WORDS[start : start + tokens])]
            if feature in variant.sample_texts and rank == 1:
                words = [variant.sample_texts[feature], *words[1:]]
            activations = np.abs(rng.normal(0, 0.3, tokens))
            activations[int(rng.integers(0, tokens))] = 4.0 / rank + rng.random()
            rows.append(
                {
                    "feature": feature,
                    "rank": rank,
                    "sample_id": int(rng.integers(0, 10_000)),
                    "text": "".join(words),
                    "tokens": words,
                    "activations": activations.round(4).tolist(),
                }
            )
    return rows


def rated_rows(
    variant: SyntheticVariant, features: Sequence[int], rng: np.random.Generator, per_stage: int
) -> list[dict[str, Any]]:
    rows = []
    for feature in features:
        for stage in ("responsiveness", "faithfulness"):
            for index in range(per_stage):
                start = int(rng.integers(0, len(WORDS) - 12))
                text = variant.sample_texts.get(feature) if index == 0 else None
                activation = float(rng.normal(1, 1))
                rows.append(
                    {
                        "feature": feature,
                        "stage": stage,
                        "factor": float(rng.choice([-10.0, 0.0, 10.0])) if stage == "faithfulness" else None,
                        "sample_id": int(rng.integers(0, 10_000)),
                        "text": text or " ".join(WORDS[start : start + 12]),
                        "activation": activation if stage == "responsiveness" else None,
                        "rating": int(rng.integers(0, 3)),
                    }
                )
    return rows


def log_variant(
    experiment_id: str,
    variant: SyntheticVariant,
    features: Sequence[int],
    *,
    seed: int = 0,
    examples: int = 5,
    tokens: int = 12,
    rated_per_stage: int = 6,
    plot_png: bytes | None = None,
    plot_features: int = 2,
    log_figure: Callable[[], Any] | None = None,
    samples_by_id: bool = True,
) -> str:
    """Log one finished variant run following the tracking contract; returns its run id.

    Args:
        plot_png: bytes of a PNG logged as `plots/score_distributions.png` and as per-feature plots.
        log_figure: makes a matplotlib figure logged with mlflow.log_figure as `plots/radar.png`.
        samples_by_id: the sample tables as harness/track logs them (`sample_tables`); False: as runs logged
            before it, each row with its text (and tokens, and stage) and the continuations among the rated samples.
    """
    rng = np.random.default_rng(seed)
    rows = feature_rows(variant, features, rng)
    metrics = score_metrics(rows, rng)
    llm_calls = 40 * len(features)
    prompt_tokens, completion_tokens = 900 * llm_calls, 60 * llm_calls
    metrics.update(
        features=len(features),
        llm_calls=llm_calls,
        llm_cache_hits=llm_calls // 10,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=variant.cost_usd,
        time_explain_s=float(rng.uniform(5, 50)),
        time_evaluate_s=float(rng.uniform(50, 500)),
    )
    with variant_run(experiment_id, f"synthetic-{variant.name}-{seed}", variant.name) as run:
        log_params(config_params(variant.overrides))
        log_metrics(metrics)
        mlflow.log_table(_columns(rows), "tables/per_feature.json")
        tables = {
            "tables/top_examples.json": example_rows(variant, features, rng, examples, tokens),
            "tables/rated_samples.json": rated_rows(variant, features, rng, rated_per_stage),
        }
        for artifact, table in (sample_tables(tables) if samples_by_id else tables).items():
            mlflow.log_table(_columns(table), artifact)
        if log_figure is not None:
            mlflow.log_figure(log_figure(), "plots/radar.png")
        if plot_png is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "score_distributions.png"
                path.write_bytes(plot_png)
                mlflow.log_artifact(str(path), "plots")
                for feature in features[:plot_features]:
                    (Path(folder) / "activations.png").write_bytes(plot_png)
                    mlflow.log_artifact(str(Path(folder) / "activations.png"), f"plots/features/{feature}")
    return run.run_id


def histogram_png() -> bytes:
    """A small real matplotlib PNG (400 x 250 px) to log as a run's plot."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 2.5))
    axes.hist([0.2, 0.4, 0.45, 0.5, 0.7, 0.72, 0.9], bins=5)
    axes.set_title("clarity over features")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def sample_tables(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The top examples and rated rows of `log_variant` (each with its text) as harness/track logs them: samples
    by id, each text and its tokens once in the corpus samples, the continuations in a table of their own."""
    samples: dict[str, dict[str, Any]] = {}  # text -> its corpus sample row

    def sample_id(text: str, tokens: list[str] | None = None) -> int:
        sample = samples.setdefault(text, {"sample_id": len(samples), "text": text, "tokens": None})
        sample["tokens"] = sample["tokens"] or tokens
        return sample["sample_id"]

    examples, rated = tables["tables/top_examples.json"], tables["tables/rated_samples.json"]
    return {
        "tables/top_examples.json": [
            {**_without(row, "text", "tokens"), "sample_id": sample_id(row["text"], row["tokens"])} for row in examples
        ],
        "tables/rated_samples.json": [
            {**_without(row, "stage", "factor", "text"), "sample_id": sample_id(row["text"])}
            for row in rated
            if row["stage"] == "responsiveness"
        ],
        "tables/rated_continuations.json": [
            _without(row, "stage", "activation") for row in rated if row["stage"] == "faithfulness"
        ],
        "tables/corpus_samples.json": list(samples.values()),
    }


def _without(row: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in names}


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    return {key: [row[key] for row in rows] for key in rows[0]}


# The tests' demo leaderboard: realistic settings, synthetic numbers.
FEATURES = list(range(24))
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">"><svg onload="window.__pwned=3">'
SPREADSHEET_FORMULA = '=HYPERLINK("http://example.invalid", "click")'
RATER = {"fade.rater.model": "openai/gpt-4o-mini"}
DEMO_VARIANTS = (
    SyntheticVariant(
        "gpt-4o · delphi · 20 examples",
        {**RATER, "explain.llm.model": "openai/gpt-4o", "explain.selection.num_examples": 20},
        quality=0.78,
        cost_usd=6.12,
    ),
    SyntheticVariant(
        "gpt-4o-mini · delphi · 10 examples",
        {**RATER, "explain.llm.model": "openai/gpt-4o-mini"},
        quality=0.74,
        cost_usd=0.41,
    ),
    SyntheticVariant(
        "gpt-4o-mini · stratified",
        {**RATER, "explain.llm.model": "openai/gpt-4o-mini", "explain.selection.strategy": "stratified"},
        quality=0.69,
        cost_usd=0.43,
    ),
    SyntheticVariant(
        "claude-haiku · neuron-explainer",
        {
            "fade.rater.model": "anthropic/claude-3-5-haiku",
            "explain.llm.model": "anthropic/claude-3-5-haiku",
            "explain.prompt.template": "neuron-explainer",
        },
        quality=0.64,
        cost_usd=1.35,
    ),
    SyntheticVariant(
        "smollm2-135m · plain", {**RATER, "explain.prompt.template": "plain"}, quality=0.41, cost_usd=0.02
    ),
    SyntheticVariant("top-tokens baseline", {**RATER, "explain.explainer": "top-tokens"}, quality=0.33, cost_usd=0.0),
    SyntheticVariant("shuffled control", {**RATER, "explain.explainer": "shuffled"}, quality=0.12, cost_usd=0.0),
)
HOSTILE_VARIANTS = (
    SyntheticVariant(
        "hostile " + PAYLOAD,
        {**RATER, "explain.llm.model": PAYLOAD},
        quality=0.6,
        cost_usd=0.5,
        descriptions={0: PAYLOAD, 1: "</script><!-- " + PAYLOAD},
        sample_texts={0: PAYLOAD},
    ),
    SyntheticVariant("plain neighbour", RATER, quality=0.5, cost_usd=0.1),
    SyntheticVariant(SPREADSHEET_FORMULA, RATER, quality=0.4, cost_usd=0.2),
)
