"""Scorers where the rater answers yes/no per example (detection, fuzzing): batches, one LLM batch, metrics.

Each feature's examples are shuffled (seeded), cut into batches of `batch_size`, and every batch of every
feature goes to the rater in one concurrent `complete_many`. The answer is a JSON object {number: 0|1};
an answer missing numbers is asked again by the LLM layer (validation), and what is still missing
after that counts as unanswered. Metrics are over the answered examples.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from harness.config import ScorerExamplesConfig, ScorersConfig
from harness.evaluate.scorers._answers import rater_answer, rater_values
from harness.evaluate.scorers._base import CorpusExamples, FeatureScore, Scorer, ask_rater
from harness.evaluate.scorers._delphi import DelphiScorer
from harness.evaluate.scorers._examples import LabelledExample, examples_or_reason
from harness.evaluate.scorers._metrics import binary_scores
from harness.evaluate.scorers.prompts import system_prompt
from harness.explain import FeatureRecord
from harness.raters import Capability
from harness.score_names import Reason

if TYPE_CHECKING:
    import pandas as pd

    from harness.llm import LLMClient
    from harness.raters import Rater

_YES_NO = (0, 1)
_SHUFFLE_STREAM = 2


@dataclass(frozen=True)
class JudgedItem:
    """One example as the rater sees it, and the right answer (True = shows the feature / marked correctly)."""

    text: str
    label: bool


@dataclass
class _Judgements:
    """One feature's answered examples (truth, answer, P(yes) or None) and how many went unanswered."""

    labels: list[bool] = field(default_factory=list)
    predictions: list[bool] = field(default_factory=list)
    probabilities: list[float | None] = field(default_factory=list)
    unanswered: int = 0


def judging_messages(prompt: str, description: str, texts: Sequence[str]) -> list[dict[str, str]]:
    """One rater call: the description, then the examples numbered from 1."""
    examples = "\n".join(f"Example {number}: {text}" for number, text in enumerate(texts, start=1))
    return [
        {"role": "system", "content": prompt},
        {"role": "user", "content": f"Description: {description}\n\nExamples:\n{examples}"},
    ]


class JudgingScorer(Scorer):
    """Shared flow of the yes/no scorers; a subclass says how its examples are shown and labelled."""

    needs_llm: ClassVar[bool] = True
    extra_columns: ClassVar[tuple[str, ...]] = ("f1", "auroc", "judged", "unanswered")

    @abstractmethod
    def items(
        self, record: FeatureRecord, labelled: list[LabelledExample], settings: ScorerExamplesConfig
    ) -> list[JudgedItem]:
        """The examples of one feature as the rater sees them (some are activating)."""

    def corpus_examples(self, config: ScorersConfig) -> frozenset[CorpusExamples]:
        """delphi's convention scores delphi's test windows."""
        return frozenset({"delphi_windows"}) if config.convention == "delphi" else frozenset()

    def score(
        self,
        records: Sequence[FeatureRecord],
        descriptions: Mapping[int, str | None],
        client: Rater | LLMClient | None,
        config: ScorersConfig,
        *,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Our convention's table, or delphi's (`scorers.convention: delphi`, harness.evaluate.scorers._delphi)."""
        if config.convention == "delphi":
            return DelphiScorer(self.name).score(records, descriptions, client, config, progress=progress)
        return super().score(records, descriptions, client, config, progress=progress)

    def prepare(
        self, record: FeatureRecord, description: str, settings: ScorerExamplesConfig
    ) -> tuple[str, list[list[JudgedItem]]] | Reason:
        """The description and the feature's shuffled items in batches."""
        labelled = examples_or_reason(record, settings, need_non_activating=False)
        if isinstance(labelled, Reason):
            return labelled
        items = self.items(record, labelled, settings)
        if all(item.label for item in items):  # no non-activating (or wrongly highlighted) example to show
            return Reason.NO_NON_ACTIVATING_EXAMPLES
        rng = np.random.default_rng([settings.seed, record.feature, _SHUFFLE_STREAM])
        shuffled = [items[i] for i in rng.permutation(len(items))]
        size = settings.batch_size
        return description, [shuffled[start : start + size] for start in range(0, len(shuffled), size)]

    def evaluate(
        self,
        prepared: Mapping[int, tuple[str, list[list[JudgedItem]]]],
        client: Rater | None,
        settings: ScorerExamplesConfig,
        *,
        progress: bool,
    ) -> dict[int, FeatureScore]:
        assert client is not None  # Scorer.score: needs_llm
        if not client.supports(Capability.PROMPTS):  # Scorer.score made sure it judges (without_prompts)
            return self._judged_directly(prepared, client)
        prompt = system_prompt(self.name)
        batches = [(feature, text, batch) for feature, (text, split) in prepared.items() for batch in split]
        formats = [rater_answer(self.name, range(1, len(batch) + 1), _YES_NO) for *_, batch in batches]
        answers = ask_rater(
            client,
            [judging_messages(prompt, description, [item.text for item in batch]) for _, description, batch in batches],
            [answer.parses for answer in formats],
            settings,
            desc=f"{self.name} ({len(prepared)} features)",
            answer_formats=formats,
            features=[feature for feature, *_ in batches],
        )
        judged = {feature: _Judgements() for feature in prepared}
        for (feature, _, batch), answer in zip(batches, answers):
            seen = judged[feature]
            values = rater_values(answer, range(1, len(batch) + 1), _YES_NO) if answer is not None else None
            for number, item in enumerate(batch, start=1):
                if values is None or number not in values.written:
                    seen.unanswered += 1
                    continue
                seen.labels.append(item.label)
                seen.predictions.append(bool(values.written[number]))
                seen.probabilities.append(values.expected.get(number))
        return self._rows(judged)

    @staticmethod
    def _judged_directly(
        prepared: Mapping[int, tuple[str, list[list[JudgedItem]]]], rater: Rater
    ) -> dict[int, FeatureScore]:
        """Judgments of a rater that judges texts itself (Capability.JUDGES): every item answered."""
        judged = {}
        for feature, (description, split) in prepared.items():
            items = [item for batch in split for item in batch]
            answers, scores = rater.judge(description, [item.text for item in items])
            judged[feature] = _Judgements([item.label for item in items], answers, list(scores))
        return JudgingScorer._rows(judged)

    @staticmethod
    def _rows(judged: Mapping[int, _Judgements]) -> dict[int, FeatureScore]:
        rows = {}
        for feature, seen in judged.items():
            complete = bool(seen.probabilities) and None not in seen.probabilities
            result = binary_scores(seen.labels, seen.predictions, seen.probabilities if complete else None)
            extras = {"f1": result.f1.value, "auroc": result.auroc.value, "judged": result.num_judged}
            rows[feature] = FeatureScore(feature, result.balanced_accuracy, extras | {"unanswered": seen.unanswered})
        return rows
