"""Which examples an explainer sees: top-k, quantile-stratified or random active ones, plus contrast.

Pure functions of a FeatureRecord and the selection settings; the random ones draw from a generator
seeded by (seed, feature), so a variant shows the same examples on every run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from harness.activations.types import ActivatingExample
from harness.config import ExampleSelectionConfig
from harness.explain._records import FeatureRecord


@dataclass(frozen=True)
class ExampleSelection:
    """The examples shown for one feature: activating ones (descending) and low/zero contrast ones."""

    examples: tuple[ActivatingExample, ...]
    contrast: tuple[ActivatingExample, ...] = ()

    @property
    def sample_ids(self) -> list[int]:
        return [example.sample_id for example in (*self.examples, *self.contrast)]


def _top(
    active: list[ActivatingExample], count: int, settings: ExampleSelectionConfig, rng: np.random.Generator
) -> list[int]:
    return list(range(min(count, len(active))))


def _random(
    active: list[ActivatingExample], count: int, settings: ExampleSelectionConfig, rng: np.random.Generator
) -> list[int]:
    if len(active) <= count:
        return list(range(len(active)))
    return sorted(rng.choice(len(active), size=count, replace=False).tolist())


def _stratified(
    active: list[ActivatingExample], count: int, settings: ExampleSelectionConfig, rng: np.random.Generator
) -> list[int]:
    """Equal shares from each activation quantile bin (ranks split evenly, highest bin first).

    When `count` does not divide evenly the highest bins get one more; a bin smaller than its share gives
    all it has and the shortfall is drawn at random from the examples not yet taken.
    """
    if len(active) <= count:
        return list(range(len(active)))
    bins = np.array_split(np.arange(len(active)), min(settings.num_quantiles, len(active)))
    base, extra = divmod(count, len(bins))
    chosen: list[int] = []
    for index, members in enumerate(bins):
        share = min(base + (index < extra), members.size)
        chosen.extend(rng.choice(members, size=share, replace=False).tolist())
    rest = np.setdiff1d(np.arange(len(active)), chosen)
    chosen.extend(rng.choice(rest, size=count - len(chosen), replace=False).tolist())
    return sorted(chosen)


# name -> (active examples by descending activation, how many, settings, rng) -> chosen positions
STRATEGIES: dict[str, Callable[..., list[int]]] = {"top": _top, "random": _random, "stratified": _stratified}


def crop_to_window(example: ActivatingExample, left: int | None, right: int | None) -> ActivatingExample:
    """The example cut to `left` tokens before and `right` tokens after its max token (None = no cut)."""
    start = 0 if left is None else max(0, example.max_position - left)
    stop = len(example.tokens) if right is None else min(len(example.tokens), example.max_position + right + 1)
    if (start, stop) == (0, len(example.tokens)):
        return example
    tokens = example.tokens[start:stop]
    return replace(
        example,
        text="".join(tokens),
        tokens=tokens,
        activations=example.activations[start:stop],
        max_position=example.max_position - start,
        ignored_positions=tuple(p - start for p in example.ignored_positions if start <= p < stop),
    )


def select_examples(record: FeatureRecord, settings: ExampleSelectionConfig) -> ExampleSelection:
    """The examples of `record` an explainer is shown under `settings`.

    Activating examples (per-sample activation > 0) are chosen by the strategy and shown in descending
    order; the 'saebench' strategy shows the record's SAEBench generation examples (none without them). Contrast examples are the remaining samples whose largest token activation is lowest.
    """
    candidates = record.candidates()
    active = [example for example in candidates if example.max_activation > 0]
    rng = np.random.default_rng([settings.seed, record.feature])
    if settings.strategy == "saebench":  # SAEBench's own draw, made with its scoring examples (record.saebench)
        chosen = list(record.saebench.generation) if record.saebench is not None else []
    else:
        chosen = [active[i] for i in STRATEGIES[settings.strategy](active, settings.num_examples, settings, rng)]
    shown = {example.sample_id for example in chosen}
    rest = [example for example in candidates if example.sample_id not in shown]
    rest.sort(key=lambda example: float(example.activations.max()) if example.activations.size else 0.0)
    contrast = rest[: settings.contrast_examples]

    def window(examples: list[ActivatingExample]) -> tuple[ActivatingExample, ...]:
        return tuple(crop_to_window(example, settings.context_left, settings.context_right) for example in examples)

    return ExampleSelection(examples=window(chosen), contrast=window(contrast))
