"""Typed FADE results: a score that may be undefined, the scores of one feature, summaries over features.

A score is undefined (value None) when the data cannot define it, e.g. no sample was rated 2. The reason
is a short machine-readable code (`harness.score_names.Reason`), so a run goes on and reports why instead of crashing
as the reference does. "Not computed" (faithfulness below the Gini threshold) is undefined too, with its
own reason: it is different from 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import EvaluationError

# Cap on resampled values held in memory at once by `summarise` (float64: 32 MiB).
_BOOTSTRAP_CHUNK_VALUES = 4_000_000


class _Record(BaseModel):
    """Frozen, strict base with JSON-ready `to_dict` and validating `from_dict`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (floats, strings, None, dicts)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Rebuild from `to_dict` output; EvaluationError names every wrong field."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
                for item in error.errors()
            )
            raise EvaluationError(
                f"invalid stored {cls.__name__}: {problems}. The data must come from {cls.__name__}.to_dict()."
            ) from None


class Score(_Record):
    """One score: a finite `value`, or None with the `reason` it is undefined (exactly one of the two)."""

    value: Annotated[float, Field(allow_inf_nan=False)] | None = None
    reason: str | None = None

    @model_validator(mode="after")
    def _value_xor_reason(self) -> Score:
        if (self.value is None) == (self.reason is None):
            raise ValueError(
                f"a score has either a value or a reason it is undefined, got value={self.value!r}, "
                f"reason={self.reason!r}"
            )
        return self

    @classmethod
    def of(cls, value: float) -> Score:
        """A defined score."""
        return cls(value=float(value))

    @classmethod
    def undefined(cls, reason: str) -> Score:
        """An undefined score; `reason` is usually a `Reason`."""
        return cls(reason=str(reason))

    @property
    def defined(self) -> bool:
        return self.value is not None


class FeatureScores(_Record):
    """The four FADE scores of one feature (and its description), with the counts behind them.

    `faithfulness_factor` is the steering factor that attains the faithfulness value; None when
    faithfulness is undefined or 0 (no factor beats the baseline).
    `counts` holds sample counts such as synthetic/natural samples and samples rated 0/1/2.
    """

    clarity: Score
    responsiveness: Score
    purity: Score
    faithfulness: Score
    faithfulness_factor: Annotated[float, Field(allow_inf_nan=False)] | None = None
    counts: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _factor_needs_faithfulness(self) -> FeatureScores:
        if self.faithfulness_factor is not None and not self.faithfulness.value:
            raise ValueError(
                f"faithfulness_factor={self.faithfulness_factor} needs a faithfulness value above 0, "
                f"got {self.faithfulness!r}"
            )
        return self


def summarise(
    values: Iterable[Score | float | None],
    *,
    confidence: float = 0.95,
    num_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Mean and median of a score over features, each with a percentile-bootstrap interval.

    Undefined scores (None, or a Score without value) are left out; `share_defined` says how many
    took part. Every statistic is None when no value is defined.

    Args:
        values: one score per feature.
        confidence: coverage of the intervals (0.95 gives 95% intervals).
        num_resamples: bootstrap resamples (features drawn with replacement).
        seed: seed of the resampling, so a summary is reproducible.

    Returns:
        n, n_defined, share_defined, mean, ci_low, ci_high (interval of the mean), median,
        median_ci_low, median_ci_high.
    """
    if not 0 < confidence < 1:
        raise EvaluationError(f"summarise: confidence must lie strictly between 0 and 1, got {confidence}")
    if num_resamples < 1:
        raise EvaluationError(f"summarise: num_resamples must be at least 1, got {num_resamples}")
    raw = [value.value if isinstance(value, Score) else value for value in values]
    defined = np.array([float(value) for value in raw if value is not None], dtype=np.float64)
    if not np.isfinite(defined).all():
        raise EvaluationError("summarise: scores must be finite numbers or None (undefined); got NaN or inf")
    summary: dict[str, float | int | None] = {
        "n": len(raw),
        "n_defined": int(defined.size),
        "share_defined": defined.size / len(raw) if raw else None,
    }
    if defined.size == 0:
        return summary | dict.fromkeys(("mean", "ci_low", "ci_high", "median", "median_ci_low", "median_ci_high"))
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_VALUES // defined.size)
    means, medians = [], []
    for start in range(0, num_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, num_resamples - start)
        resampled = defined[rng.integers(0, defined.size, size=(rows, defined.size))]
        means.append(resampled.mean(axis=1))
        medians.append(np.median(resampled, axis=1))
    tails = [(1 - confidence) / 2, 1 - (1 - confidence) / 2]
    mean_low, mean_high = np.quantile(np.concatenate(means), tails)
    median_low, median_high = np.quantile(np.concatenate(medians), tails)
    return summary | {
        "mean": float(defined.mean()),
        "ci_low": float(mean_low),
        "ci_high": float(mean_high),
        "median": float(np.median(defined)),
        "median_ci_low": float(median_low),
        "median_ci_high": float(median_high),
    }
