"""Fuzzing (Paulo et al. 2024, delphi): does the rater, given the description, tell right highlights from wrong?

Activating examples are shown with their active tokens highlighted (correct). Wrongly highlighted examples
get as many random tokens highlighted as the correct ones have on average (rounded up): either
non-activating examples (delphi's default) or the activating examples again with the highlights on
inactive tokens (delphi's 'active' variant). Main value: balanced accuracy; also F1 and, with
log-probabilities, AUROC.
"""

from __future__ import annotations

import math

import numpy as np

from harness.activations.types import ActivatingExample
from harness.config import FuzzingConfig
from harness.evaluate.scorers._examples import LabelledExample, peak_activation, visible_text
from harness.evaluate.scorers._judging import JudgedItem, JudgingScorer
from harness.explain import FeatureRecord
from harness.score_names import Reason

_HIGHLIGHT_STREAM = 3


def correct_highlight(example: ActivatingExample, scale: float, threshold: float) -> np.ndarray:
    """Tokens at least `threshold` x the feature's largest activation; the example's peak token at least."""
    activations = np.asarray(example.activations, dtype=np.float64)
    return activations >= min(threshold * scale, peak_activation(example))


def wrong_highlight(length: int, avoid: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray | None:
    """`count` random tokens highlighted among those not in `avoid`; None when there are none to choose."""
    allowed = np.flatnonzero(~avoid[:length])
    if allowed.size == 0:
        return None
    marked = np.zeros(length, dtype=bool)
    marked[rng.choice(allowed, size=min(count, allowed.size), replace=False)] = True
    return marked


class FuzzingScorer(JudgingScorer):
    unjudged_without_prompts = Reason.RATER_SEES_NO_HIGHLIGHTS

    def items(
        self, record: FeatureRecord, labelled: list[LabelledExample], settings: FuzzingConfig
    ) -> list[JudgedItem]:
        scale = record.max_token_activation()
        activating = [item.example for item in labelled if item.activating]
        highlights = [correct_highlight(example, scale, settings.highlight_threshold) for example in activating]
        items = [JudgedItem(visible_text(ex.tokens, marked), True) for ex, marked in zip(activating, highlights)]
        count = math.ceil(np.mean([marked.sum() for marked in highlights]))
        rng = np.random.default_rng([settings.seed, record.feature, _HIGHLIGHT_STREAM])
        if settings.wrong_examples == "non-activating":
            sources = [(item.example, None) for item in labelled if not item.activating]
        else:
            cycle = [i % len(activating) for i in range(settings.num_non_activating)]
            sources = [(activating[i], highlights[i]) for i in cycle]
        for example, avoid in sources:
            ignored = np.zeros(len(example.tokens), dtype=bool)
            ignored[list(example.ignored_positions)] = True
            marked = wrong_highlight(len(example.tokens), ignored if avoid is None else ignored | avoid, count, rng)
            if marked is not None:
                items.append(JudgedItem(visible_text(example.tokens, marked), False))
        return items
