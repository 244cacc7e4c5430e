"""The explain stage of a variant: its features' descriptions, from the shared activations (and pools), and the
output evidence of the features when its explainer reads it (computed here, once per variant)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.config import HarnessConfig
    from harness.explain import Explainer
    from harness.llm import UsageLedger
    from harness.llm.tracing import CallTracer
    from harness.stages._shared import SharedStages


def _needs_pool(config: HarnessConfig, explainer: Explainer) -> bool:
    selection = config.explain.selection
    return explainer.needs_pools and (selection.strategy not in {"top", "saebench"} or selection.contrast_examples > 0)


def describe_features(
    config: HarnessConfig, shared: SharedStages, ledger: UsageLedger | None = None, tracer: CallTracer | None = None
) -> tuple[pd.DataFrame, dict[str, float | int]]:
    """The variant's descriptions table and what the explainer's LLM calls used (also appended to `ledger`;
    each call a trace through `tracer`)."""
    from harness.explain import build_feature_records, generate_descriptions, make_explainer, output_evidence
    from harness.llm import LLMClient

    explainer = make_explainer(config.explain)
    output = None
    if explainer.needs_output_evidence:  # first: a site without an output direction fails before any pass
        site = shared.site(config)
        output = output_evidence(
            shared.model(config),
            site,
            shared.corpus(config),
            site.resolve_features(site.selection).tolist(),  # the activation pass's features
            config.explain.output,
            explainer.needs_output_evidence,
            max_length=config.activations.max_length,
            batch_size=config.activations.batch_size,
            progress=shared.progress,
        )
    activation_set = shared.activations(config)
    pools = None
    if _needs_pool(config, explainer):
        selection = config.explain.selection
        pools = shared.pools(config, num_quantiles=selection.num_quantiles, seed=selection.seed)
    saebench = shared.saebench_examples(config) if config.explain.selection.strategy == "saebench" else None
    records = build_feature_records(activation_set, pools, saebench=saebench, output=output)
    if not explainer.needs_llm:
        return generate_descriptions(records, config.explain), {}
    client = LLMClient(config.explain.llm, config.activations.cache_dir, progress=shared.progress)
    client.ledger = ledger
    client.tracer = tracer
    try:
        return generate_descriptions(records, config.explain, client), client.usage.as_dict()
    finally:
        client.close()
