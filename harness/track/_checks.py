"""What can be checked of a variant before its MLflow run exists, so that a bad input leaves no failed run.

The checks are the ones a run would otherwise fail on after it started: the prompt template, the scorer
names, the LLM model strings and response caches, the rater's own checks (harness.raters.check_rater), the
corpus, the site's module path and its features, and that the site has an output direction when the explainer
projects it onto the vocabulary.
The model, corpus and site they load are the run's own (SharedStages), so nothing is done twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.config import HarnessConfig
from harness.stages import SharedStages


def check_variant(config: HarnessConfig, shared: SharedStages) -> None:
    """Raise the HarnessError the variant would fail with early; return when it can start."""
    from harness.evaluate.scorers import SCORERS
    from harness.explain import make_explainer
    from harness.llm import LLMClient
    from harness.raters import check_rater

    explainer = make_explainer(config.explain)  # loads the template and checks it fits the selection
    for name in config.scorers.enabled:
        SCORERS.get(name)
    cache_dir = config.activations.cache_dir
    LLMClient(config.fade.generation_llm, cache_dir, progress=False).close()  # model string, cache readable
    check_rater(config.fade, cache_dir)
    if explainer.needs_llm:
        LLMClient(config.explain.llm, cache_dir, progress=False).close()
    site = shared.site(config)
    features = site.resolve_features(site.selection)
    if "vocab-proj" in explainer.needs_output_evidence:  # a SiteError naming the sites that have one
        site.output_directions(shared.model(config), features[:1].tolist())
    shared.corpus(config)


def check_variants(configs: Iterable[HarnessConfig], shared: SharedStages) -> None:
    """check_variant for each: the first bad one raises, before the runs of any of them exist."""
    for config in configs:
        check_variant(config, shared)
