"""Which examples a scorer shows for one feature, each labelled activating or not, and how they are written.

Pure functions of a FeatureRecord and the scorer's example settings. The activating examples are drawn
by the explain stage's selection strategies; the non-activating ones at random among the examples whose
largest token activation is near zero (the activation pool's least-active samples). Draws are seeded by
(seed, feature), so a rerun shows the same examples and its LLM calls come from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.activations.types import ActivatingExample
from harness.config import ExampleSelectionConfig, ScorerExamplesConfig
from harness.explain import FeatureRecord, highlight_tokens, select_examples
from harness.score_names import Reason

_NON_ACTIVATING_STREAM = 1  # keeps the non-activating draw independent of the strategy's draw


@dataclass(frozen=True)
class LabelledExample:
    """One example a scorer shows, and whether it is an activating one."""

    example: ActivatingExample
    activating: bool


def peak_activation(example: ActivatingExample) -> float:
    """The example's largest token activation (0 for an empty example)."""
    return float(example.activations.max()) if example.activations.size else 0.0


def scoring_examples(record: FeatureRecord, settings: ScorerExamplesConfig) -> list[LabelledExample]:
    """The activating examples (strategy order: descending activation), then the non-activating ones.

    Activating: largest token activation >= `activating_above` x the feature's largest; non-activating:
    below `non_activating_below` x it. Fewer come back when the record holds fewer; none when every
    activation is zero or below.
    """
    scale = record.max_token_activation()
    if scale <= 0:
        return []
    candidates = record.candidates()
    peaks = [peak_activation(example) for example in candidates]
    activating = [example for example, peak in zip(candidates, peaks) if peak >= settings.activating_above * scale]
    quiet = [example for example, peak in zip(candidates, peaks) if peak < settings.non_activating_below * scale]
    selection = select_examples(
        FeatureRecord(feature=record.feature, top_examples=tuple(activating)),
        ExampleSelectionConfig(
            strategy=settings.strategy,
            num_examples=settings.num_activating,
            num_quantiles=settings.num_quantiles,
            seed=settings.seed,
        ),
    )
    rng = np.random.default_rng([settings.seed, record.feature, _NON_ACTIVATING_STREAM])
    take = min(settings.num_non_activating, len(quiet))
    chosen = sorted(rng.choice(len(quiet), size=take, replace=False).tolist()) if take else []
    return [LabelledExample(example, True) for example in selection.examples] + [
        LabelledExample(quiet[index], False) for index in chosen
    ]


def examples_or_reason(
    record: FeatureRecord, settings: ScorerExamplesConfig, *, need_non_activating: bool
) -> list[LabelledExample] | Reason:
    """`scoring_examples`, or why they cannot score the feature (no activating / no non-activating one)."""
    labelled = scoring_examples(record, settings)
    if not any(item.activating for item in labelled):
        return Reason.NO_ACTIVATING_EXAMPLES
    if need_non_activating and all(item.activating for item in labelled):
        return Reason.NO_NON_ACTIVATING_EXAMPLES
    return labelled


def visible_text(tokens: list[str], marked: np.ndarray | None = None) -> str:
    """The tokens as one prompt line (line breaks escaped), runs of `marked` tokens wrapped in << >>."""
    return highlight_tokens(tokens, np.zeros(len(tokens), dtype=bool) if marked is None else marked)
