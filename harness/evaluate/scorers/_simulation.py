"""Simulation (Bills et al. 2023, OpenAI): can the rater predict per-token activations from the description?

For each activating and non-activating example, one rater call lists the tokens and asks for a 0-10
activation per token (a JSON object {token number: value}). The prediction is the expected value over the
rater's log-probabilities when the backend gives them, else the written value. Main value: Pearson
correlation between predicted and true activations over every scored token of the feature's examples
(Bills et al.'s "all at once" score over top and random examples); ignored positions are left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from harness.activations.types import ActivatingExample
from harness.config import ScorerExamplesConfig
from harness.evaluate.scorers._answers import RaterValues, rater_answer, rater_values
from harness.evaluate.scorers._base import FeatureScore, Scorer, ask_rater
from harness.evaluate.scorers._examples import examples_or_reason, visible_text
from harness.evaluate.scorers._metrics import simulation_correlation
from harness.evaluate.scorers.prompts import system_prompt
from harness.explain import FeatureRecord
from harness.score_names import Reason

if TYPE_CHECKING:
    from harness.raters import Rater

ACTIVATION_SCALE = tuple(range(11))


def simulation_messages(prompt: str, description: str, tokens: Sequence[str]) -> list[dict[str, str]]:
    """One rater call: the description, then the example's tokens one per line, numbered from 0."""
    lines = "\n".join(f"{position}\t{visible_text([token])}" for position, token in enumerate(tokens))
    return [
        {"role": "system", "content": prompt},
        {"role": "user", "content": f"Description: {description}\n\nTokens:\n{lines}"},
    ]


def predicted_pairs(example: ActivatingExample, values: RaterValues | None) -> tuple[list[float], list[float], int]:
    """(true, predicted) activations of the example's scored tokens, and how many scored tokens got no prediction."""
    ignored = set(example.ignored_positions)
    truth, predicted, missing = [], [], 0
    for position, activation in enumerate(np.asarray(example.activations, dtype=np.float64)):
        if position in ignored:
            continue
        if values is None or position not in values.written:
            missing += 1
            continue
        truth.append(float(activation))
        predicted.append(float(values.expected.get(position, values.written[position])))
    return truth, predicted, missing


class SimulationScorer(Scorer):
    needs_llm = True
    unjudged_without_prompts = Reason.RATER_CANNOT_SIMULATE
    extra_columns = ("tokens", "unanswered")

    def prepare(
        self, record: FeatureRecord, description: str, settings: ScorerExamplesConfig
    ) -> tuple[str, list[ActivatingExample]] | Reason:
        """The description and the examples to simulate (activating and non-activating)."""
        labelled = examples_or_reason(record, settings, need_non_activating=False)
        if isinstance(labelled, Reason):
            return labelled
        return description, [item.example for item in labelled if item.example.tokens]

    def evaluate(
        self,
        prepared: Mapping[int, tuple[str, list[ActivatingExample]]],
        client: Rater | None,
        settings: ScorerExamplesConfig,
        *,
        progress: bool,
    ) -> dict[int, FeatureScore]:
        assert client is not None  # Scorer.score: needs_llm, and a rater without prompts is unjudged_without_prompts
        prompt = system_prompt(self.name)
        asked = [(feature, text, example) for feature, (text, examples) in prepared.items() for example in examples]
        formats = [rater_answer(self.name, range(len(example.tokens)), ACTIVATION_SCALE) for *_, example in asked]
        answers = ask_rater(
            client,
            [simulation_messages(prompt, description, example.tokens) for _, description, example in asked],
            [answer.parses for answer in formats],
            settings,
            desc=f"simulation ({len(prepared)} features)",
            answer_formats=formats,
            features=[feature for feature, *_ in asked],
        )
        truth: dict[int, list[float]] = defaultdict(list)
        predicted: dict[int, list[float]] = defaultdict(list)
        missing: Counter[int] = Counter()
        for (feature, _, example), answer in zip(asked, answers):
            values = None if answer is None else rater_values(answer, range(len(example.tokens)), ACTIVATION_SCALE)
            example_truth, example_predicted, example_missing = predicted_pairs(example, values)
            truth[feature] += example_truth
            predicted[feature] += example_predicted
            missing[feature] += example_missing
        return {
            feature: FeatureScore(
                feature,
                simulation_correlation(truth[feature], predicted[feature]),
                {"tokens": len(truth[feature]), "unanswered": missing[feature]},
            )
            for feature in prepared
        }
