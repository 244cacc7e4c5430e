"""A variant's stages in their one order: corpus -> activations -> explain -> evaluate (FADE) -> other scorers ->
metrics. Everything that runs a variant runs it through `run_variant`: `harness run` and the search (with
tracking as the observer, harness.track.variant), the followers of an `accelerate launch` (their team role
receives the lead's descriptions) and `harness evaluate` (its descriptions given). Nothing here knows MLflow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.stages._describe import describe_features
from harness.stages._evaluate import evaluate_in_chunks
from harness.stages._metrics import variant_metrics
from harness.stages._score import score_with_other_scorers
from harness.stages._shared import SharedStages, StageTimer
from harness.stages._tables import llm_failed_features, per_feature_table

if TYPE_CHECKING:
    import pandas as pd

    from harness.config import HarnessConfig
    from harness.evaluate.fade.pipeline import EvaluationResult
    from harness.llm import UsageLedger
    from harness.llm.tracing import CallTracer


def variant_workdir(config: HarnessConfig, key: str) -> Path:
    """Where a variant's FADE results and usage ledgers live, named by its result fingerprint `key`."""
    return Path(config.activations.cache_dir) / "runs" / key


def run_ledger(workdir: Path, run_id: str) -> UsageLedger:
    """The run's usage ledger: every process of the run appends to it (a killed one's counts survive)."""
    from harness.llm import UsageLedger

    return UsageLedger(workdir / f"usage-{run_id}.jsonl")


class VariantObserver:
    """What watches a variant while it runs; tracking logs what it sees (harness.track.variant), the search
    prunes on the running scores. Every hook does nothing here."""

    def tracer(self, stage: str) -> CallTracer | None:
        """Where the stage's LLM calls are traced; None: not traced."""
        return None

    def corpus_loaded(self, corpus: pd.DataFrame) -> None:
        """The corpus the variant reads."""

    def evaluated_chunk(self, scores: pd.DataFrame, step: int) -> None:
        """FADE's per-feature scores so far, after chunk `step` (may raise to stop the variant)."""


class Team(Protocol):
    """This process's part in a variant: alone, the lead of an `accelerate launch` (computes the descriptions
    and tells the followers), or a follower (receives them and runs its share of FADE only)."""

    leads: bool

    def describe(self, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame: ...

    def together(self) -> AbstractContextManager[None]: ...


class Alone:
    """One process does all of it (or, under `harness evaluate`, each process its share of FADE with the same
    given descriptions; `leads` says which process also runs the scorers)."""

    def __init__(self, leads: bool = True) -> None:
        self.leads = leads

    def describe(self, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        return compute()

    @contextmanager
    def together(self) -> Iterator[None]:
        yield


@dataclass
class VariantResult:
    """What a variant produced; on a follower (team.leads False) only the descriptions and FADE's own results,
    in the work folder."""

    descriptions: pd.DataFrame
    evaluation: EvaluationResult  # FADE's, with the folder of its per-feature results
    per_feature: pd.DataFrame | None = None  # FADE's scores, the other scorers', each description's provenance
    scored: pd.DataFrame | None = None  # the other scorers' own table (with their details), when any is enabled
    metrics: dict[str, float | None] | None = None
    llm_failed: list[int] | None = None  # features whose LLM calls (FADE's or a scorer's) failed for good


def run_variant(
    config: HarnessConfig,
    key: str,
    shared: SharedStages,
    ledger: UsageLedger | None = None,
    *,
    observer: VariantObserver | None = None,
    team: Team | None = None,
    descriptions: pd.DataFrame | None = None,
    workdir: Path | None = None,
    chunk_size: int | None = None,
) -> VariantResult:
    """Run one variant's stages in order and return its tables and metrics.

    Args:
        config: the variant's whole config.
        key: its settings hash (result_fingerprint): names its work folder.
        shared: model/corpus/site/activations shared with the other variants of this process.
        ledger: the run's usage ledger (every process of the run appends to it); None: nothing recorded.
        observer: what watches the stages (tracing, the corpus, FADE's running scores).
        team: this process's part (Alone by default).
        descriptions: given descriptions (`harness evaluate`): the explain stage is skipped.
        workdir: where FADE keeps its per-feature results (default `<cache_dir>/runs/<key>`; FADE's in `fade/`).
        chunk_size: FADE on `chunk_size` features at a time, each chunk seen by the observer (search pruning).
    """
    observer = observer or VariantObserver()
    team = team or Alone()
    fade_dir = workdir if workdir is not None else variant_workdir(config, key) / "fade"
    timer = StageTimer()

    def stage_ledger(stage: str) -> UsageLedger | None:
        return ledger.stage(stage) if ledger is not None else None

    with timer.stage("activations"):
        corpus = shared.corpus(config)
        if descriptions is None:  # the explainer reads it; FADE makes its own pass for given descriptions' features
            shared.activations(config)
    observer.corpus_loaded(corpus)
    if descriptions is None:
        with timer.stage("explain"):
            descriptions = team.describe(
                lambda: describe_features(config, shared, stage_ledger("explain"), observer.tracer("explain"))[0]
            )
    with timer.stage("evaluate"), team.together():
        evaluated = evaluate_in_chunks(
            config,
            descriptions,
            fade_dir,
            shared,
            chunk_size=chunk_size,
            on_chunk=observer.evaluated_chunk,
            ledger=stage_ledger("fade"),
            tracer=observer.tracer("fade"),
        )
    result = VariantResult(descriptions, evaluated)
    if not team.leads:
        return result
    per_feature = per_feature_table(evaluated.scores, descriptions)
    if config.scorers.enabled:
        with timer.stage("scorers"):
            result.scored = score_with_other_scorers(
                config, descriptions, shared, stage_ledger("scorers"), observer.tracer("scorers")
            )
        per_feature = per_feature.merge(result.scored, on="feature", how="left")
    failed = llm_failed_features(per_feature)
    result.per_feature = per_feature
    result.llm_failed = failed
    result.metrics = variant_metrics(
        per_feature, config, ledger, timer, floor_cost=evaluated.floor_cost, llm_failed=len(failed)
    )
    return result
