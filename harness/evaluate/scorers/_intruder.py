"""Intruder (Paulo & Belrose 2025, delphi): can the rater spot the one non-activating example among activating ones?

No description is involved: the score says how coherent a feature's activating examples are, a baseline
for what any description of it could reach. Each trial shows `num_activating` activating examples of one
activation quantile bin (trial i uses bin i mod bins, as delphi cycles its quantiles) and one intruder,
a non-activating example of the same feature's pool, at a random position. With `highlight` the activating
tokens are marked <<like this>> and the intruder gets as many random tokens marked (delphi's default).
Main value: the share of answered trials where the rater picked the intruder (chance 1 / (num_activating + 1)).

Draws are seeded by (seed, feature), and the prompts hold no description: every variant of a site asks the
same questions, which the LLM cache answers after the first. With the embedding rater (a proxy for an LLM
judge) the pick is the example least similar to the mean embedding of the others.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.activations.types import ActivatingExample
from harness.config import IntruderConfig
from harness.evaluate.scorers._base import FeatureScore, Scorer, ask_rater
from harness.evaluate.scorers._examples import peak_activation, visible_text
from harness.evaluate.scorers._fuzzing import correct_highlight, wrong_highlight
from harness.evaluate.scorers.prompts import system_prompt
from harness.evaluate.scores import Score
from harness.explain import FeatureRecord
from harness.llm import AnswerFormat, choice_format
from harness.raters import Capability
from harness.score_names import Reason

if TYPE_CHECKING:
    from harness.raters import Rater

ANSWER_KEY = "intruder"
_TRIAL_STREAM = 4  # which examples and where the intruder goes
_HIGHLIGHT_STREAM = 5  # which intruder tokens are marked (so `highlight` does not change the draws)
_KEYED = re.compile(r"""intruder["']?\s*(?:[:=]|is)\s*["']?(?:example\s*)?(\d+)""", re.IGNORECASE)
_DELPHI = re.compile(r"\[RESPONSE\]\s*:\s*(\d+)", re.IGNORECASE)
_BARE = re.compile(r"^\W*(?:example\s*)?(\d+)\W*$", re.IGNORECASE)


@dataclass(frozen=True)
class IntruderTrial:
    """One trial: the examples as the rater sees them, unmarked, and where the intruder is (0-based)."""

    texts: tuple[str, ...]
    plain: tuple[str, ...]
    intruder: int
    quantile: int


def read_choice(text: object, count: int) -> int | None:
    """The example number (1..count) an answer names as the intruder, or None; never raises.

    Read from {"intruder": n} (in a code fence or after chatter too; "the intruder is example n" too),
    delphi's "[RESPONSE]: n", or an answer that is just the number.
    """
    if not isinstance(text, str):
        return None
    for pattern in (_KEYED, _DELPHI, _BARE):
        match = pattern.search(text.strip())
        if match:
            number = int(match.group(1))
            return number if 1 <= number <= count else None
    return None


def intruder_answer(count: int) -> AnswerFormat:
    """What a trial asks the rater for: {"intruder": n} with n one of the `count` example numbers."""
    return AnswerFormat(
        ANSWER_KEY,
        choice_format(ANSWER_KEY, ANSWER_KEY, range(1, count + 1)),
        lambda text: read_choice(text, count) is not None,
    )


def intruder_messages(prompt: str, texts: Sequence[str]) -> list[dict[str, str]]:
    """One rater call: the examples numbered from 1, and no description."""
    examples = "\n".join(f"Example {number}: {text}" for number, text in enumerate(texts, start=1))
    return [{"role": "system", "content": prompt}, {"role": "user", "content": f"Examples:\n{examples}"}]


def quantile_bins(activating: Sequence[ActivatingExample], size: int, num_quantiles: int) -> list[list[int]]:
    """Indices of the activating examples (by descending peak) in up to `num_quantiles` equal-count bins of at
    least `size` each: fewer bins when there are too few examples to fill them."""
    count = min(num_quantiles, len(activating) // size)
    return [part.tolist() for part in np.array_split(np.arange(len(activating)), count)]


def intruder_trials(record: FeatureRecord, settings: IntruderConfig) -> list[IntruderTrial] | Reason:
    """The feature's trials, or why it has none (see the module docstring).

    Activating: largest token activation >= `activating_above` x the feature's largest; intruders: below
    `non_activating_below` x it, each used once, so fewer trials come back when the pool has fewer.
    """
    scale = record.max_token_activation()
    if scale <= 0:
        return Reason.NO_ACTIVATING_EXAMPLES
    candidates = record.candidates()
    peaks = [peak_activation(example) for example in candidates]
    ranked = sorted(zip(peaks, range(len(candidates))), key=lambda pair: -pair[0])
    activating = [candidates[i] for peak, i in ranked if peak >= settings.activating_above * scale]
    quiet = [example for example, peak in zip(candidates, peaks) if peak < settings.non_activating_below * scale]
    if not activating:
        return Reason.NO_ACTIVATING_EXAMPLES
    if len(activating) < settings.num_activating:
        return Reason.TOO_FEW_ACTIVATING_EXAMPLES
    if not quiet:
        return Reason.NO_NON_ACTIVATING_EXAMPLES
    bins = quantile_bins(activating, settings.num_activating, settings.num_quantiles)
    rng = np.random.default_rng([settings.seed, record.feature, _TRIAL_STREAM])
    marks = np.random.default_rng([settings.seed, record.feature, _HIGHLIGHT_STREAM])
    intruders = rng.choice(len(quiet), size=min(settings.num_trials, len(quiet)), replace=False).tolist()
    trials = []
    for number, intruder_index in enumerate(intruders):
        quantile = number % len(bins)
        chosen = rng.choice(bins[quantile], size=settings.num_activating, replace=False).tolist()
        shown = [activating[i] for i in chosen]
        position = int(rng.integers(0, len(shown) + 1))
        intruder = quiet[intruder_index]
        texts = [shown_text(example, scale, settings) for example in shown]
        texts.insert(position, intruder_text(intruder, shown, scale, settings, marks))
        plain = [visible_text(example.tokens) for example in shown]
        plain.insert(position, visible_text(intruder.tokens))
        trials.append(IntruderTrial(tuple(texts), tuple(plain), position, quantile))
    return trials


def shown_text(example: ActivatingExample, scale: float, settings: IntruderConfig) -> str:
    """An activating example as the rater sees it: its active tokens marked when `highlight` is on."""
    if not settings.highlight:
        return visible_text(example.tokens)
    return visible_text(example.tokens, correct_highlight(example, scale, settings.highlight_threshold))


def intruder_text(
    intruder: ActivatingExample,
    shown: Sequence[ActivatingExample],
    scale: float,
    settings: IntruderConfig,
    rng: np.random.Generator,
) -> str:
    """The intruder as the rater sees it: with `highlight`, as many random tokens marked as the shown
    examples have marked on average (rounded up, as fuzzing's wrong highlights), never an ignored position."""
    if not settings.highlight:
        return visible_text(intruder.tokens)
    count = math.ceil(np.mean([correct_highlight(ex, scale, settings.highlight_threshold).sum() for ex in shown]))
    ignored = np.zeros(len(intruder.tokens), dtype=bool)
    ignored[list(intruder.ignored_positions)] = True
    return visible_text(intruder.tokens, wrong_highlight(len(intruder.tokens), ignored, count, rng))


class IntruderScorer(Scorer):
    needs_llm = True
    needs_description = False
    without_prompts = Capability.PICKS_ODD_ONE_OUT  # a rater that reads no prompts picks the odd text itself
    kind = "feature"
    extra_columns = ("chance", "trials", "unanswered")

    def prepare(
        self, record: FeatureRecord, description: str, settings: IntruderConfig
    ) -> list[IntruderTrial] | Reason:
        """The feature's trials; the description is not used."""
        return intruder_trials(record, settings)

    def evaluate(
        self,
        prepared: Mapping[int, list[IntruderTrial]],
        client: Rater | None,
        settings: IntruderConfig,
        *,
        progress: bool,
    ) -> dict[int, FeatureScore]:
        assert client is not None  # Scorer.score: needs_llm
        asked = [(feature, trial) for feature, trials in prepared.items() for trial in trials]
        if client.supports(Capability.PROMPTS):
            prompt = system_prompt(self.name)
            formats = [intruder_answer(len(trial.texts)) for _, trial in asked]
            answers = ask_rater(
                client,
                [intruder_messages(prompt, trial.texts) for _, trial in asked],
                [answer.parses for answer in formats],
                None,
                desc=f"intruder ({len(prepared)} features)",
                answer_formats=formats,
                features=[feature for feature, _ in asked],
            )
            picks = [
                None if answer is None else _position(read_choice(answer.text, len(trial.texts)))
                for (_, trial), answer in zip(asked, answers)
            ]
        else:  # a rater that reads no prompts (the embedding rater): the example least like the others
            picks = [pick for pick, _ in client.odd_ones_out([trial.plain for _, trial in asked])]
        correct: dict[int, list[bool]] = {feature: [] for feature in prepared}
        unanswered = dict.fromkeys(prepared, 0)
        for (feature, trial), pick in zip(asked, picks):
            if pick is None:
                unanswered[feature] += 1
            else:
                correct[feature].append(pick == trial.intruder)
        chance = 1.0 / (settings.num_activating + 1)
        return {
            feature: FeatureScore(
                feature,
                Score.of(float(np.mean(hits))) if hits else Score.undefined(Reason.NO_VALID_ANSWERS),
                {"chance": chance, "trials": len(hits), "unanswered": unanswered[feature]},
            )
            for feature, hits in correct.items()
        }


def _position(number: int | None) -> int | None:
    return None if number is None else number - 1
