"""A variant's result tables (per feature, top examples, rated samples), built from its stages' outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from harness.config import HarnessConfig
    from harness.stages._shared import SharedStages


def per_feature_table(scores: pd.DataFrame, descriptions: pd.DataFrame) -> pd.DataFrame:
    """Scores with each description's provenance (explainer, hashes, tokens, cost, error: empty where the table
    has none); a feature whose
    explainer calls failed has its FADE scores' reasons say so (Reason.LLM_FAILED)."""
    from harness.explain import is_llm_failure
    from harness.score_names import FADE_SCORES, Reason

    provenance = descriptions.reindex(  # given descriptions (`harness evaluate`) may lack the provenance
        columns=[
            "feature",
            "description",
            "explainer",
            "settings_hash",
            "prompt_hash",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "error",
        ]
    )
    table = provenance.merge(scores.drop(columns=["description"]), on="feature", how="left")
    failed = table["error"].map(is_llm_failure).astype(bool)
    for score in FADE_SCORES:
        table[f"{score}_reason"] = table[f"{score}_reason"].astype(object).mask(failed, str(Reason.LLM_FAILED))
    return table.rename(columns={"cost_usd": "explain_cost_usd", "error": "explain_error"})


def llm_failed_features(per_feature: pd.DataFrame) -> list[int]:
    """The features of a per-feature table with a score left undefined because LLM calls failed."""
    from harness.score_names import Reason

    reasons = per_feature[[column for column in per_feature.columns if str(column).endswith("_reason")]]
    return per_feature.loc[(reasons == str(Reason.LLM_FAILED)).any(axis=1), "feature"].astype(int).tolist()


def _feature_tables(fade_dir: Path, name: str) -> pd.DataFrame:
    """One table kind (e.g. 'natural_ratings') of every feature, with a feature column."""
    frames = []
    for path in sorted((fade_dir / "features").glob(f"*/{name}.csv"), key=lambda p: int(p.parent.name)):
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
        frame.insert(0, "feature", int(path.parent.name))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"feature": []})


def rated_samples_table(fade_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The corpus samples FADE rated for Responsiveness and Purity (`feature`, `sample_id`, `activation`, `rating`),
    and their texts once (`sample_id`, `text`): one corpus sample is rated for many features, and its text in each
    of its rows made the table most of a run's store (158 kB of ~200 a feature at bench_scale)."""
    natural = _feature_tables(fade_dir, "natural_ratings")
    if not len(natural):
        return pd.DataFrame(columns=["feature", "sample_id", "activation", "rating"]), _no_samples()
    rated = natural[["feature", "sample_id", "activation", "rating"]].assign(
        activation=natural["activation"].map(_shown_value)
    )
    texts = natural[["sample_id", "text"]].drop_duplicates("sample_id")
    return rated, texts


def rated_continuations_table(fade_dir: Path) -> pd.DataFrame:
    """The steered continuations FADE rated for Faithfulness: `feature`, `factor`, `sample_id` (its prompt's),
    `text` (the continuation), `rating`."""
    columns = ["feature", "factor", "sample_id", "text", "rating"]
    continuations = _feature_tables(fade_dir, "continuations")
    if not len(continuations):
        return pd.DataFrame(columns=columns)
    return continuations.rename(columns={"continuation": "text"})[columns]


def top_examples_table(shared: SharedStages, config: HarnessConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each feature's top examples (`feature`, `rank`, `sample_id`, `activations`: per token), and their samples
    once (`sample_id`, `text`, `tokens`): a sample is a top example of many features."""
    rows, samples = [], {}
    for feature, examples in shared.activations(config).top_examples.items():
        for rank, example in enumerate(examples, start=1):
            samples.setdefault(example.sample_id, (example.text, list(example.tokens)))
            activations = [_shown_value(value) for value in example.activations.tolist()]
            rows.append((feature, rank, example.sample_id, activations))
    shown = pd.DataFrame(
        [(sample_id, text, tokens) for sample_id, (text, tokens) in samples.items()],
        columns=["sample_id", "text", "tokens"],
    )
    return pd.DataFrame(rows, columns=["feature", "rank", "sample_id", "activations"]), shown


def sample_tables(shared: SharedStages, config: HarnessConfig, fade_dir: Path) -> dict[str, pd.DataFrame]:
    """The run's sample tables by artifact path (harness.artifacts): top examples, rated samples, rated
    continuations, and the corpus samples they name (each text once)."""
    from harness import artifacts

    top, shown = top_examples_table(shared, config)
    rated, texts = rated_samples_table(fade_dir)
    return {
        artifacts.TOP_EXAMPLES_TABLE: top,
        artifacts.RATED_SAMPLES_TABLE: rated,
        artifacts.RATED_CONTINUATIONS_TABLE: rated_continuations_table(fade_dir),
        artifacts.CORPUS_SAMPLES_TABLE: corpus_samples_table(shown, texts),
    }


def corpus_samples_table(*samples: pd.DataFrame) -> pd.DataFrame:
    """Every sample a run's tables name, once, by id: `sample_id`, `text`, and `tokens` (the subject model's) where
    the sample is a top example."""
    merged = pd.concat([_no_samples(), *samples], ignore_index=True)
    return merged.groupby("sample_id", sort=True).first().reset_index()[["sample_id", "text", "tokens"]]


def _no_samples() -> pd.DataFrame:
    return pd.DataFrame(columns=["sample_id", "text", "tokens"])


def _shown_value(value: float) -> float:
    """An activation as a run's tables show it: 4 significant digits, for reading and the leaderboard, where more
    only made the tables larger (the evaluation's own files keep every digit)."""
    return 0 if value == 0 else float(f"{value:.4g}")
