"""Detection and fuzzing in the delphi convention (`scorers.convention: delphi`): eai-delphi 0.1.3's defaults.

Every rule cites delphi's file and line (paths under the `delphi/` package of the eai-delphi 0.1.3 wheel).
The examples are the feature's WindowSample (harness.activations.delphi_windows: rank slices over every
active window, random inactive windows). A feature's samples are the inactive windows then the test
windows (detection.py:272-284, fuzz.py:381-413), shuffled by a Random(42) (classifier.py:46,53) and cut
into batches of `n_examples_shown` (classifier.py:213-217); each batch is one call with delphi's prompt and
few-shot examples (prompts/*.py), answered by a Python list (classifier.py:136-155). Metrics follow
delphi/log/result_analysis.py:86-149, per feature, and pooled over every example of every feature
(`pooled_balanced_accuracy`, what delphi's result analysis reports, :254-272).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.activations.types import ActivatingExample, WindowSample
from harness.config import ScorersConfig
from harness.errors import EvaluationError
from harness.evaluate.scorers._base import FeatureScore, Messages, Scorer, ask_rater
from harness.evaluate.scores import Score
from harness.explain import FeatureRecord
from harness.score_names import Reason

if TYPE_CHECKING:
    from harness.raters import Rater

HIGHLIGHT_THRESHOLD = 0.3  # examples_to_samples' default (sample.py:466); FuzzingScorer never passes its own
# What delphi shows instead of a wrong example whose window has exactly one token at or below the threshold
# (sample.py:428-431,539-545: `squeeze()` of one index is 0-d, which delphi takes for "none").
DEFAULT_MESSAGE = "<<NNsight>> is the best library for <<interpretability>> on huge models!"
_HIGHLIGHT_SEED = 22  # sample.py:547, reset before every wrong example
_SHUFFLE_SEED = 42  # Classifier's default seed (classifier.py:24,46)
_ANSWER_LIST = re.compile(r"\[.*?\]")  # classifier.py:142


@dataclass(frozen=True)
class DelphiSample:
    """One example as delphi's classifier shows it, and whether it is an activating (test) window."""

    text: str
    activating: bool


def highlighted(tokens: Sequence[str], marked: Sequence[bool] | np.ndarray) -> str:
    """The tokens joined, each run of marked tokens wrapped in << >> with its whitespace inside (sample.py:583-599).

    Tokens are written as they are (line breaks included): delphi joins its decoded tokens (sample.py:518).
    """
    parts = []
    for index, token in enumerate(tokens):
        opens = marked[index] and (index == 0 or not marked[index - 1])
        closes = marked[index] and (index == len(tokens) - 1 or not marked[index + 1])
        parts.append(f"{'<<' if opens else ''}{token}{'>>' if closes else ''}")
    return "".join(parts)


def correct_marks(activations: np.ndarray) -> np.ndarray:
    """Tokens at or above 0.3 x the example's own largest value (sample.py:522,526-531), not the feature's."""
    return activations >= HIGHLIGHT_THRESHOLD * float(activations.max())


def wrong_marks(activations: np.ndarray, n_incorrect: int) -> np.ndarray | None:
    """delphi's wrongly highlighted tokens of one example; None where delphi shows DEFAULT_MESSAGE instead.

    As sample.py:533-580: the candidates are the tokens at or below 0.3 x the example's largest value
    (:535-537, all of them for an inactive window, whose values are zeros); the token at len - len // 4
    is always one of them when it is a candidate (:551-569, marked "TODO: This is wrong"), the others
    are `random.sample` after `random.seed(22)` (:547), the same draw for every example of that length.
    """
    candidates = np.flatnonzero(activations <= HIGHLIGHT_THRESHOLD * float(activations.max()))
    if candidates.size == 1:
        return None
    rng = random.Random(_HIGHLIGHT_SEED)
    count = min(n_incorrect, candidates.size)
    fixed = len(activations) - len(activations) // 4
    if fixed in candidates:
        chosen = [fixed]
        if count - 1 > 0:
            chosen += rng.sample([int(i) for i in candidates if i != fixed], count - 1)
    else:
        chosen = rng.sample(candidates.tolist(), count)
    marks = np.zeros(len(activations), dtype=bool)
    marks[chosen] = True
    return marks


def n_incorrect(test: Sequence[ActivatingExample]) -> int:
    """Wrong tokens per wrong example: the mean number of NONZERO values of the test windows, rounded up
    (fuzz.py:347-355,379), not the number of highlighted tokens."""
    return math.ceil(sum(int(np.count_nonzero(example.activations)) for example in test) / len(test))


def detection_samples(windows: WindowSample) -> list[DelphiSample]:
    """Inactive windows then test windows, as raw text (detection.py:267-286; sample.py:516-520)."""
    return [DelphiSample("".join(example.tokens), False) for example in windows.not_active] + [
        DelphiSample("".join(example.tokens), True) for example in windows.test
    ]


def fuzzing_samples(windows: WindowSample) -> list[DelphiSample]:
    """delphi's default fuzzing ('default' fuzz_type): wrong examples from the inactive windows, then the test
    windows with their correct highlights (fuzz.py:373-414).

    When the first inactive window has a value above zero (delphi's contrastive sources), every inactive
    window is shown with its own peak tokens highlighted as if correct (fuzz.py:385-390); otherwise each gets
    `n_incorrect` wrong tokens (:391-397).
    """
    samples = []
    count = n_incorrect(windows.test)
    contrastive = bool(windows.not_active) and bool((windows.not_active[0].activations > 0).any())
    for example in windows.not_active:
        marks = correct_marks(example.activations) if contrastive else wrong_marks(example.activations, count)
        samples.append(DelphiSample(DEFAULT_MESSAGE if marks is None else highlighted(example.tokens, marks), False))
    return samples + [
        DelphiSample(highlighted(example.tokens, correct_marks(example.activations)), True) for example in windows.test
    ]


def shuffled_batches(samples: Sequence[DelphiSample], size: int) -> list[list[DelphiSample]]:
    """Shuffled by a fresh Random(42) (classifier.py:46,53), cut every `size` (classifier.py:213-217).

    delphi keeps one Random per scorer for the whole run, so its order depends on which latents came before
    (under its async pipeline, on timing); a fresh one per feature is its order for the first latent.
    """
    shuffled = list(samples)
    random.Random(_SHUFFLE_SEED).shuffle(shuffled)
    return [shuffled[start : start + size] for start in range(0, len(shuffled), size)]


@cache
def _prompt(kind: str) -> dict[str, Any]:
    return json.loads(files("harness.evaluate.scorers.prompts").joinpath(f"delphi_{kind}.json").read_text("utf-8"))


def delphi_messages(kind: str, explanation: str, texts: Sequence[str]) -> Messages:
    """delphi's conversation: system prompt, three few-shot pairs, then the examples numbered from 0
    (classifier.py:194-207; prompts/detection_prompt.py:59-80, prompts/fuzz_prompt.py:85-105)."""
    prompt = _prompt(kind)
    examples = "\n".join(f"Example {number}: {text}" for number, text in enumerate(texts))
    shots = [
        {"role": role, "content": content}
        for pair in prompt["few_shot"]
        for role, content in zip(("user", "assistant"), pair)
    ]
    user = prompt["user"].format(explanation=explanation, examples=examples)
    return [{"role": "system", "content": prompt["system"]}, *shots, {"role": "user", "content": user}]


def parse_answer(text: str, expected: int) -> list[bool] | None:
    """The first [...] of the answer as a list of `expected` truth values; None (the whole batch unanswered)
    when there is none, it is not JSON, or it has another length (classifier.py:110-115,141-148)."""
    match = _ANSWER_LIST.search(text)
    if match is None:
        return None
    try:
        values = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(values, list) or len(values) != expected:
        return None
    return [bool(value) for value in values]


@dataclass(frozen=True)
class Confusion:
    """Counts of answered examples (delphi's compute_confusion, result_analysis.py:86-110)."""

    true_positives: int
    true_negatives: int
    false_positives: int
    false_negatives: int

    @classmethod
    def of(cls, labels: Sequence[bool], predictions: Sequence[bool]) -> Confusion:
        pairs = list(zip(labels, predictions))
        return cls(
            true_positives=sum(label and said for label, said in pairs),
            true_negatives=sum(not label and not said for label, said in pairs),
            false_positives=sum(not label and said for label, said in pairs),
            false_negatives=sum(label and not said for label, said in pairs),
        )

    def balanced_accuracy(self) -> float:
        """delphi's `accuracy` (result_analysis.py:124-127): a class without examples counts 0, not undefined."""
        positives = self.true_positives + self.false_negatives
        negatives = self.true_negatives + self.false_positives
        recall = self.true_positives / positives if positives else 0.0
        specificity = self.true_negatives / negatives if negatives else 0.0
        return (recall + specificity) / 2

    def f1(self) -> float:
        """delphi's f1_score (result_analysis.py:129-133), 0 where undefined."""
        said_yes = self.true_positives + self.false_positives
        positives = self.true_positives + self.false_negatives
        precision = self.true_positives / said_yes if said_yes else 0.0
        recall = self.true_positives / positives if positives else 0.0
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


COUNT_COLUMNS = ("true_positives", "true_negatives", "false_positives", "false_negatives")


def pooled_balanced_accuracy(counts: Sequence[Mapping[str, Any]]) -> float | None:
    """delphi's headline number: balanced accuracy of every answered example of every feature pooled
    (result_analysis.py:254-272 over all latents' rows); None when no feature has counts."""
    rows = [row for row in counts if all(row.get(name) is not None for name in COUNT_COLUMNS)]
    if not rows:
        return None
    total = {name: int(sum(row[name] for row in rows)) for name in COUNT_COLUMNS}
    return Confusion(**total).balanced_accuracy()


class DelphiScorer(Scorer):
    """Detection or fuzzing by delphi's rules; made by JudgingScorer.score under `scorers.convention: delphi`."""

    needs_llm: ClassVar[bool] = True
    unjudged_without_prompts = Reason.RATER_READS_NO_PROMPT
    extra_columns: ClassVar[tuple[str, ...]] = ("f1", "judged", "unanswered", *COUNT_COLUMNS)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @property
    def name(self) -> str:
        return self.kind

    def settings(self, config: ScorersConfig) -> ScorersConfig:
        return config

    def prepare(
        self, record: FeatureRecord, description: str, settings: ScorersConfig
    ) -> tuple[str, list[list[DelphiSample]]] | Reason:
        """The description and the feature's shuffled batches, or why delphi would not score it."""
        windows = record.windows
        if windows is None:
            raise EvaluationError(
                f"feature {record.feature} has no delphi windows; build the records with "
                "windows=harness.activations.delphi_windows(...) when scorers.convention is 'delphi'"
            )
        if windows.num_active == 0:
            return Reason.NO_ACTIVATING_EXAMPLES
        if windows.num_active < settings.delphi.min_examples:  # constructors.py:288-293
            return Reason.TOO_FEW_ACTIVATING_EXAMPLES
        if self.kind == "fuzzing" and not windows.not_active:  # fuzz.py:382 asserts; detection goes on (:272-278)
            return Reason.NO_NON_ACTIVATING_EXAMPLES
        samples = fuzzing_samples(windows) if self.kind == "fuzzing" else detection_samples(windows)
        return description, shuffled_batches(samples, settings.delphi.n_examples_shown)

    def evaluate(
        self,
        prepared: Mapping[int, tuple[str, list[list[DelphiSample]]]],
        client: Rater | None,
        settings: ScorersConfig,
        *,
        progress: bool,
    ) -> dict[int, FeatureScore]:
        assert client is not None  # Scorer.score: needs_llm, and a rater without prompts is unjudged_without_prompts
        shown = settings.delphi.n_examples_shown
        batches = [(feature, text, batch) for feature, (text, split) in prepared.items() for batch in split]
        answers = ask_rater(
            client,
            [delphi_messages(self.kind, text, [sample.text for sample in batch]) for _, text, batch in batches],
            [lambda _: True] * len(batches),  # delphi asks once; a malformed answer leaves its batch unanswered
            None,  # no log-probabilities: delphi's default (log_probs False, delphi/config.py:180)
            desc=f"{self.kind} (delphi convention, {len(prepared)} features)",
            features=[feature for feature, *_ in batches],
        )
        labels: dict[int, list[bool]] = {feature: [] for feature in prepared}
        predictions: dict[int, list[bool]] = {feature: [] for feature in prepared}
        unanswered = dict.fromkeys(prepared, 0)
        for (feature, _, batch), answer in zip(batches, answers):
            said = parse_answer(answer.text, shown) if answer is not None else None
            if said is None:
                unanswered[feature] += len(batch)
                continue
            for sample, prediction in zip(batch, said):  # a short last batch reads the first answers (:118)
                labels[feature].append(sample.activating)
                predictions[feature].append(prediction)
        rows = {}
        for feature in prepared:
            confusion = Confusion.of(labels[feature], predictions[feature])
            judged = len(labels[feature])
            score = Score(value=confusion.balanced_accuracy()) if judged else Score.undefined(Reason.NO_VALID_ANSWERS)
            extras = {"f1": confusion.f1() if judged else None, "judged": judged, "unanswered": unanswered[feature]}
            rows[feature] = FeatureScore(feature, score, extras | vars(confusion))
        return rows
