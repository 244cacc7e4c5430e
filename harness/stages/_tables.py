"""A variant's result tables (per feature, top examples, rated samples), built from its stages' outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
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
    """Every rated natural sample and steered continuation, in one table (the leaderboard's drill-down), and the
    natural samples' texts once (`sample_id`, `text`): one corpus sample is rated for many features, and its text
    in each of its rows made the table most of a run's store (158 kB of ~200 a feature at bench_scale)."""
    natural = _feature_tables(fade_dir, "natural_ratings")
    continuations = _feature_tables(fade_dir, "continuations")
    columns = ["feature", "stage", "factor", "sample_id", "text", "activation", "rating"]
    parts = []
    texts = pd.DataFrame(columns=["sample_id", "text"])
    if len(natural):
        texts = natural[["sample_id", "text"]].drop_duplicates("sample_id").sort_values("sample_id")
        parts.append(natural.assign(stage="responsiveness", factor=np.nan, text=None)[columns])
    if len(continuations):
        parts.append(
            continuations.rename(columns={"continuation": "text"}).assign(stage="faithfulness", activation=np.nan)[
                columns
            ]
        )
    rated = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return rated, texts.reset_index(drop=True)


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
