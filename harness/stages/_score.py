"""The scorers stage of a variant: the enabled extra scorers on its descriptions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.config import HarnessConfig
    from harness.llm import UsageLedger
    from harness.llm.tracing import CallTracer
    from harness.stages._shared import SharedStages


def score_with_other_scorers(
    config: HarnessConfig,
    descriptions: pd.DataFrame,
    shared: SharedStages,
    ledger: UsageLedger | None = None,
    tracer: CallTracer | None = None,
):
    """The enabled extra scorers (detection, fuzzing, simulation, embedding, intruder) on the variant's descriptions.

        Their examples come from a pool of their own (with as many least-active samples as they need), so the
        explainer's contrast examples stay as they were; under `scorers.convention: delphi` detection and fuzzing
        read delphi's test windows instead (SharedStages.delphi_windows); the saebench scorer reads SAEBench's
        examples (SharedStages.saebench_examples); the output-centric scorers (`needs_model`) run the subject model
    at the site (SharedStages.model, .site). Returns their per-feature table; an LLM rater appends
        what it spends to `ledger` and records each call as a trace through `tracer`.
    """
    from harness.evaluate.scorers import SCORERS, SubjectSite, least_active_needed, run_scorers
    from harness.explain import build_feature_records
    from harness.raters import build_rater

    activation_set = shared.activations(config)
    pools = shared.pools(config, num_low=max(10, least_active_needed(config.scorers)), seed=config.seed)
    scorers = [SCORERS.get(name)() for name in config.scorers.enabled]
    examples = frozenset().union(*(scorer.corpus_examples(config.scorers) for scorer in scorers))
    records = build_feature_records(
        activation_set,
        pools,
        shared.delphi_windows(config) if "delphi_windows" in examples else None,
        shared.saebench_examples(config) if "saebench" in examples else None,
    )
    texts = dict(zip(descriptions["feature"].astype(int), descriptions["description"]))
    needs_llm = any(scorer.needs_llm for scorer in scorers)
    needs_model = any(scorer.needs_model for scorer in scorers)
    subject = SubjectSite(shared.model(config), shared.site(config)) if needs_model else None
    corpus_texts = shared.corpus(config)["text"].tolist()
    client = (
        build_rater(
            config.fade,
            config.activations.cache_dir,
            corpus_texts,
            progress=shared.progress,
            ledger=ledger,
            tracer=tracer,
        )
        if needs_llm
        else None
    )
    try:
        return run_scorers(records, texts, config.scorers, client, progress=shared.progress, subject=subject)
    finally:
        if client is not None:
            client.close()
