"""The evaluate stage of a variant: FADE on its descriptions, in chunks of features when asked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

    from harness.config import HarnessConfig
    from harness.llm import UsageLedger
    from harness.llm.tracing import CallTracer
    from harness.stages._shared import SharedStages

# Called after each chunk of features with the per-feature FADE scores so far and the chunk number; may raise
# to stop.
ChunkCallback = Callable[["pd.DataFrame", int], None]


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

    After each chunk `on_chunk` gets the per-feature scores so far (the search stage prunes on their aggregate).
    Returns the last EvaluationResult (covering every feature), with the clarity floor's cost summed over
    the chunks (each computes the floor of its own features). What the LLM calls spent is in `ledger`.
    """
    from harness.evaluate.fade.pipeline import evaluate_descriptions

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
            corpus=shared.corpus(config),
            site=shared.site(config),
        )
        floor_cost.update(result.floor_cost)
        if on_chunk is not None:
            on_chunk(result.scores, step)
    return replace(result, floor_cost=dict(floor_cost))
