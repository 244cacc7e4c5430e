"""SAEBench's autointerp score (sae-bench 0.6.0, sae_bench/evals/autointerp/main.py): the judge lists the examples
it thinks activate, and the score is the share of the 14 it classed right.

The examples are the feature's SAEBenchSample (harness.activations.saebench_examples: 2 top, 2 activation-
weighted, 10 random, shuffled). One call per feature with SAEBench's prompt (main.py:367-392, stored as
prompts/saebench.json), answered with comma-separated numbers or "None", asked once (a malformed answer
leaves the feature unscored, main.py:259-261). The run-level number SAEBench reports, the mean over
features (main.py:649), is this scorer's `saebench_mean`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, ClassVar

from harness.activations.types import SAEBenchSample
from harness.config import SAEBenchConfig, ScorersConfig
from harness.evaluate.scorers._base import CorpusExamples, FeatureScore, Messages, Scorer, ask_rater
from harness.evaluate.scores import Score
from harness.explain import FeatureRecord
from harness.score_names import Reason

if TYPE_CHECKING:
    from harness.raters import Rater


def example_text(tokens: Sequence[str]) -> str:
    """An example as SAEBench writes it: tokens joined, U+FFFD dropped, line breaks as ↵ (main.py:83-93)."""
    return "".join(tokens).replace("\ufffd", "").replace("\n", "↵")


@cache
def _prompt() -> dict[str, str]:
    return json.loads(files("harness.evaluate.scorers.prompts").joinpath("saebench.json").read_text("utf-8"))


def saebench_messages(explanation: str, texts: Sequence[str], example_response: Sequence[int]) -> Messages:
    """SAEBench's scoring conversation, examples numbered from 1 (main.py:367-392)."""
    prompt = _prompt()
    examples = "\n".join(f"{number}. {text}" for number, text in enumerate(texts, start=1))
    system = prompt["system"].format(
        n_examples=len(texts), example_response=", ".join(str(number) for number in example_response)
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": prompt["user"].format(explanation=explanation, examples=examples)},
    ]


def example_response(rng: random.Random, settings: SAEBenchConfig) -> list[int]:
    """The made-up answer SAEBench's system prompt shows: as many numbers as there are active examples, drawn
    at random and sorted (main.py:379-385)."""
    correct = settings.n_top_ex_for_scoring + settings.n_iw_sampled_ex_for_scoring
    return sorted(rng.sample(range(1, 1 + settings.n_ex_for_scoring), k=correct))


def parse_predictions(text: str) -> list[int] | None:
    """The numbers the judge listed; [] for "None"; None when anything else is in the list (main.py:284-298):
    a trailing full stop is dropped and "and" counts as a comma, wherever it appears."""
    parts = text.strip().rstrip(".").replace("and", ",").replace("None", "").split(",")
    listed = [part.strip() for part in parts if part.strip() != ""]
    if not all(part.isdigit() for part in listed):
        return None
    return [int(part) for part in listed]


def saebench_score(predictions: Sequence[int], active: Sequence[bool]) -> float:
    """The share of examples classed right: example i is predicted active when i is listed (main.py:300-309)."""
    said = [number in predictions for number in range(1, len(active) + 1)]
    return sum(guess == truth for guess, truth in zip(said, active)) / len(active)


class SAEBenchScorer(Scorer):
    """SAEBench's autointerp score of each described feature (docs/scorers/saebench.md)."""

    needs_llm: ClassVar[bool] = True
    unjudged_without_prompts = Reason.RATER_READS_NO_PROMPT
    extra_columns: ClassVar[tuple[str, ...]] = ("active", "predicted")
    convention: ClassVar[str | None] = "SAEBench's (sae-bench 0.6.0 autointerp)"

    def corpus_examples(self, config: ScorersConfig) -> frozenset[CorpusExamples]:
        return frozenset({"saebench"})

    def prepare(
        self, record: FeatureRecord, description: str, settings: SAEBenchConfig
    ) -> tuple[str, SAEBenchSample] | Reason:
        if record.saebench is None:  # SAEBench skips it: nothing active below its top examples (main.py:456-457)
            return Reason.TOO_FEW_ACTIVATING_EXAMPLES
        return description, record.saebench

    def evaluate(
        self,
        prepared: Mapping[int, tuple[str, SAEBenchSample]],
        client: Rater | None,
        settings: SAEBenchConfig,
        *,
        progress: bool,
    ) -> dict[int, FeatureScore]:
        assert client is not None  # Scorer.score: needs_llm, and a rater without prompts is unjudged_without_prompts
        # SAEBench draws each prompt's made-up answer from its global Random after the examples' shuffles; one
        # Random seeded like its run, drawn in feature order (SAEBench's order depends on its API's timing).
        rng = random.Random(settings.random_seed)
        features = list(prepared)
        conversations = [
            saebench_messages(
                prepared[feature][0],
                [example_text(example.tokens) for example in prepared[feature][1].scoring],
                example_response(rng, settings),
            )
            for feature in features
        ]
        answers = ask_rater(
            client,
            conversations,
            [lambda _: True] * len(features),  # SAEBench asks once
            None,
            desc=f"saebench ({len(features)} features)",
            features=features,
        )
        rows = {}
        for feature, answer in zip(features, answers):
            active = prepared[feature][1].active
            predictions = parse_predictions(answer.text) if answer is not None else None
            extras: dict[str, Any] = {"active": sum(active), "predicted": None}
            if predictions is None:
                rows[feature] = FeatureScore(feature, Score.undefined(Reason.NO_VALID_ANSWERS), extras)
                continue
            extras["predicted"] = len(set(predictions))
            rows[feature] = FeatureScore(feature, Score(value=saebench_score(predictions, active)), extras)
        return rows
