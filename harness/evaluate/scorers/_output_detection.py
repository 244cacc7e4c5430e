"""Output detection (Gur-Arieh et al. 2025's output metric): does the description pick out what steering the
feature makes the model write?

Each feature is clamped, at every position, to the values that move the model's next-token distributions on
three neutral prompts by fixed KL targets (+-0.25, +-0.5; found by a bisection, all features stepping
together), and the model continues each prompt under each clamp (25 tokens sampled at temperature 0.75,
every feature's rows of one prompt in one batch). The rater sees the description and three sets of these
continuations, the feature's and two other scored features', in a seeded order, and picks the set the
description matches. Main value: the share of trials picked right (chance 1/3).

The continuations read no description: computed once per feature, site and settings in a process (every
variant of a site shares them), each serves its feature's trials and the trials of the features that draw it
as an other set. Method and choices:
docs/scorers/output-centric.md.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from harness.config import StrictModel
from harness.evaluate.scorers._base import FeatureScore, Scorer, ask_rater
from harness.evaluate.scorers._steering import ModelCounts, clamp_values, sampled_continuations
from harness.evaluate.scorers.prompts import system_prompt
from harness.evaluate.scores import Score
from harness.explain import FeatureRecord
from harness.llm import AnswerFormat, choice_format
from harness.score_names import Reason

ANSWER_KIND = "output_detection"
ANSWER_KEY = "set"
NUM_SETS = 3  # the feature's and two others'
_TRIAL_STREAM = 6  # which other features, and where the feature's set goes
_SAMPLE_STREAM = 7  # the sampled tokens of each continuation
_KEYED = re.compile(r"""set["']?\s*[:=]\s*["']?(\d+)""", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"(\d+)\D*$")
# site -> (settings, feature) -> the feature's set of continuations (None: a KL target not reached)
_SETS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], str | None]] = weakref.WeakKeyDictionary()


class OutputDetectionConfig(StrictModel):
    """Gur-Arieh et al.'s output metric, at the reference's settings (yoavgur/Feature-Descriptions)."""

    prompts: list[str] = Field(
        default_factory=lambda: ["The explanation is simple:", "I think", "We"],
        min_length=1,
        description="neutral prompts continued (OUTPUT_METRIC_GENERATION_PROMPTS)",
    )
    kl_targets: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, -0.25, -0.5],
        min_length=1,
        description="KL from the clean run each clamp is searched for; negative: a negative clamp (KL_DIV_VALUES)",
    )
    kl_tolerance: float = Field(0.1, gt=0, description="the search stops at a KL in [target, target + this]")
    max_clamp: float = Field(1000.0, gt=0, description="the search's bound on |clamp value| (the reference's 1000)")
    max_search_steps: int = Field(12, ge=1, le=60, description="bisection steps before the search stops")
    generation_length: int = Field(25, ge=1, le=200, description="tokens generated per continuation")
    temperature: float = Field(0.75, gt=0, description="sampling temperature of the continuations")
    num_trials: int = Field(1, ge=1, le=100, description="rater calls per feature, each with two other sets drawn")
    batch_rows: int = Field(48, ge=1, description="rows per forward pass or generate call")
    seed: int = 0

    @field_validator("kl_targets")
    @classmethod
    def _nonzero(cls, value: list[float]) -> list[float]:
        if any(target == 0 for target in value):
            raise ValueError("a KL target of 0 is the clean run; give targets like 0.25 or -0.5")
        return value

    @property
    def num_non_activating(self) -> int:
        """Least-active pool samples it needs (least_active_needed reads it): none."""
        return 0


def read_set(text: object) -> int | None:
    """The set number (1..3) an answer picks, or None; never raises. Read from {"set": n}, else from the last
    number written (the reference's answer: a line of reasoning, then the number)."""
    if not isinstance(text, str):
        return None
    match = _KEYED.search(text) or _LAST_NUMBER.search(text.strip())
    if match is None:
        return None
    number = int(match.group(1))
    return number if 1 <= number <= NUM_SETS else None


def set_answer() -> AnswerFormat:
    """What a trial asks the rater for: {"set": n}, n one of 1..3."""
    return AnswerFormat(
        ANSWER_KIND,
        choice_format(ANSWER_KIND, ANSWER_KEY, range(1, NUM_SETS + 1)),
        lambda text: read_set(text) is not None,
    )


def set_text(prompts: Sequence[str], targets: Sequence[float], texts: Mapping[tuple[float, int], str]) -> str:
    """One feature's continuations as the rater sees them (the reference's layout): per KL target and prompt a
    line `<+0.25>'prompt': 'continuation'`, line breaks written as \\n."""
    lines = []
    for target in targets:
        for index, prompt in enumerate(prompts):
            text = texts[(target, index)].replace("\n", "\\n").replace("\r", "\\r")
            lines.append(f"<{target:+}>'{prompt}': '{text}'")
    return "\n".join(lines)


def detection_messages(prompt: str, description: str, sets: Sequence[str]) -> list[dict[str, str]]:
    """One rater call: the description, then the sets numbered from 1."""
    shown = "\n\n".join(f"# Set {number}\n{text}" for number, text in enumerate(sets, start=1))
    return [
        {"role": "system", "content": prompt},
        {"role": "user", "content": f"Description: {description}\n\n{shown}"},
    ]


def draw_trials(feature: int, others: Sequence[int], settings: OutputDetectionConfig) -> list[tuple[list[int], int]]:
    """The feature's trials: the features whose sets are shown, in order, and where its own set is (0-based);
    seeded by (seed, feature), so they depend on which features have sets, not on the order they are scored."""
    rng = np.random.default_rng([settings.seed, feature, _TRIAL_STREAM])
    pool = sorted(other for other in others if other != feature)
    trials = []
    for _ in range(settings.num_trials):
        shown = [pool[i] for i in rng.choice(len(pool), size=NUM_SETS - 1, replace=False)]
        position = int(rng.integers(0, NUM_SETS))
        shown.insert(position, feature)
        trials.append((shown, position))
    return trials


class OutputDetectionScorer(Scorer):
    needs_llm = True
    needs_model = True
    kind = "output"
    side = "output"
    convention = "Gur-Arieh et al. 2025's output metric (yoavgur/Feature-Descriptions)"
    settings_model = OutputDetectionConfig
    extra_columns = ("chance", "trials", "unanswered")
    counts: ModelCounts | None = None  # the last evaluation's model work (the benchmark reads it)

    def prepare(self, record: FeatureRecord, description: str, settings: OutputDetectionConfig) -> str:
        return description

    def evaluate(
        self, prepared: Mapping[int, str], client: Any, settings: OutputDetectionConfig, *, progress: bool
    ) -> dict[int, FeatureScore]:
        assert client is not None and self.subject is not None  # Scorer.score: needs_llm, needs_model
        if len(prepared) < NUM_SETS:
            return {feature: FeatureScore(feature, Score.undefined(Reason.TOO_FEW_FEATURES)) for feature in prepared}
        sets = self.continuation_sets(list(prepared), settings)
        rows = {
            feature: FeatureScore(feature, Score.undefined(Reason.KL_TARGET_UNREACHABLE))
            for feature in prepared
            if feature not in sets
        }
        if len(sets) < NUM_SETS:
            return rows | {feature: FeatureScore(feature, Score.undefined(Reason.TOO_FEW_FEATURES)) for feature in sets}
        asked = [(feature, trial) for feature in sets for trial in draw_trials(feature, list(sets), settings)]
        prompt = system_prompt(self.name)
        answers = ask_rater(
            client,
            [detection_messages(prompt, prepared[feature], [sets[f] for f in shown]) for feature, (shown, _) in asked],
            [set_answer().parses] * len(asked),
            None,
            desc=f"{self.name} ({len(sets)} features)",
            answer_formats=[set_answer()] * len(asked),
            features=[feature for feature, _ in asked],
        )
        hits: dict[int, list[bool]] = {feature: [] for feature in sets}
        unanswered = dict.fromkeys(sets, 0)
        for (feature, (_, position)), answer in zip(asked, answers):
            pick = None if answer is None else read_set(answer.text)
            if pick is None:
                unanswered[feature] += 1
            else:
                hits[feature].append(pick - 1 == position)
        for feature, picked in hits.items():
            score = Score.of(float(np.mean(picked))) if picked else Score.undefined(Reason.NO_VALID_ANSWERS)
            extras = {"chance": 1.0 / NUM_SETS, "trials": len(picked), "unanswered": unanswered[feature]}
            rows[feature] = FeatureScore(feature, score, extras)
        return rows

    def continuation_sets(self, features: Sequence[int], settings: OutputDetectionConfig) -> dict[int, str]:
        """feature -> its set of continuations, for the features whose every KL target was reached.

        A feature's set reads no description and no other feature, so it is kept for the site object (the one
        `SharedStages` gives every variant of a process) and the settings: later variants compute only the
        features not seen yet.
        """
        assert self.subject is not None
        known = _SETS.setdefault(self.subject.site, {})
        key = settings.model_dump_json()
        missing = [feature for feature in features if (key, feature) not in known]
        self.counts = ModelCounts()
        if missing:
            for feature, text in self._computed_sets(missing, settings).items():
                known[(key, feature)] = text
        return {feature: text for feature in features if (text := known[(key, feature)]) is not None}

    def _computed_sets(self, features: Sequence[int], settings: OutputDetectionConfig) -> dict[int, str | None]:
        """feature -> its set, or None where a KL target was not reached."""
        assert self.subject is not None and self.counts is not None
        model, site = self.subject.model, self.subject.site
        values = clamp_values(
            model,
            site,
            settings.prompts,
            features,
            settings.kl_targets,
            bound=settings.max_clamp,
            tolerance=settings.kl_tolerance,
            max_steps=settings.max_search_steps,
            batch_rows=settings.batch_rows,
            counts=self.counts,
        )
        reached = [
            feature for feature in features if all(values[(feature, t)] is not None for t in settings.kl_targets)
        ]
        rows = [(feature, slot, target) for feature in reached for slot, target in enumerate(settings.kl_targets)]
        texts: dict[int, dict[tuple[float, int], str]] = {feature: {} for feature in reached}
        for index, prompt in enumerate(settings.prompts):  # one prompt's rows together: no padding
            continued = sampled_continuations(
                model,
                site,
                prompt,
                [(feature, float(values[(feature, target)])) for feature, _, target in rows],  # type: ignore[arg-type]
                [(settings.seed, feature, _SAMPLE_STREAM, slot, index) for feature, slot, _ in rows],
                generation_length=settings.generation_length,
                temperature=settings.temperature,
                batch_rows=settings.batch_rows,
                counts=self.counts,
            )
            for (feature, _, target), text in zip(rows, continued):
                texts[feature][(target, index)] = text
        sets = {feature: set_text(settings.prompts, settings.kl_targets, texts[feature]) for feature in reached}
        return {feature: sets.get(feature) for feature in features}
