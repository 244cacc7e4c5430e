"""Detection (Paulo et al. 2024, delphi): does the rater, given the description, pick the activating examples?

The rater sees activating and non-activating examples, unmarked and shuffled, and says which show the
description. Main value: balanced accuracy; also F1, and AUROC when the rater's log-probabilities give
P(yes) for every example.
"""

from __future__ import annotations

from harness.config import DetectionConfig
from harness.evaluate.scorers._examples import LabelledExample, visible_text
from harness.evaluate.scorers._judging import JudgedItem, JudgingScorer
from harness.explain import FeatureRecord
from harness.raters import Capability


class DetectionScorer(JudgingScorer):
    without_prompts = Capability.JUDGES  # a rater that reads no prompts says yes or no per example itself

    def items(
        self, record: FeatureRecord, labelled: list[LabelledExample], settings: DetectionConfig
    ) -> list[JudgedItem]:
        return [JudgedItem(visible_text(item.example.tokens), item.activating) for item in labelled]
