"""Why is a feature's score low? FADE's question, answered per feature from two kinds of evidence:

- the description-free **intruder** score (can the rater spot a non-activating example among activating
  ones?): high means the feature's activating examples share something this rater sees;
- the description's own scores: FADE's gate, Clarity and Responsiveness both at least `gini_threshold` (0.5),
  means the description captured the feature.

| label | when |
| --- | --- |
| well described | the description passes the gate (then the feature is interpretable, whatever intruder says) |
| badly described | it fails the gate, and intruder >= INTERPRETABLE_INTRUDER: interpretable, the description missed it |
| not interpretable | it fails the gate, and intruder < INTERPRETABLE_INTRUDER: this rater sees no common pattern |
| undetermined | a gate score is left out of the aggregate (harness.score_names.Undefined), or it fails the gate and intruder is undefined or was not run |

A gate score that is undefined by the description's fault counts as failing (as in the aggregate).
INTERPRETABLE_INTRUDER = 0.5: with the intruder defaults (10 trials, 4 activating examples and 1 intruder
each, chance 0.2) a feature at chance reaches 5 of 10 with probability 0.033 (binomial).

Pure: a per-feature table in, one label per feature out.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from harness.evaluate.aggregate import policy_values

INTERPRETABLE_INTRUDER = 0.5
GATE_THRESHOLD = 0.5  # FADE's gini_threshold default; runs log theirs as `fade.gini_threshold`


class FeatureLabel(StrEnum):
    WELL_DESCRIBED = "interpretable and well described"
    BADLY_DESCRIBED = "interpretable but badly described"
    NOT_INTERPRETABLE = "not interpretable by this rater"
    UNDETERMINED = "undetermined"


def feature_labels(
    per_feature: pd.DataFrame,
    *,
    gate_threshold: float = GATE_THRESHOLD,
    intruder_threshold: float = INTERPRETABLE_INTRUDER,
) -> pd.Series:
    """One FeatureLabel value per feature (index = feature) of a run's per-feature table."""
    clarity, responsiveness = policy_values(per_feature, "clarity"), policy_values(per_feature, "responsiveness")
    frame = per_feature.drop_duplicates("feature").set_index("feature")
    intruder = (
        pd.to_numeric(frame["intruder"], errors="coerce").astype(float)
        if "intruder" in frame
        else pd.Series(np.nan, index=frame.index)
    )
    labels = []
    for feature in frame.index:
        gate = (clarity[feature], responsiveness[feature])
        if any(np.isnan(value) for value in gate):
            labels.append(FeatureLabel.UNDETERMINED.value)
        elif min(gate) >= gate_threshold:
            labels.append(FeatureLabel.WELL_DESCRIBED.value)
        elif np.isnan(intruder[feature]):
            labels.append(FeatureLabel.UNDETERMINED.value)
        elif intruder[feature] >= intruder_threshold:
            labels.append(FeatureLabel.BADLY_DESCRIBED.value)
        else:
            labels.append(FeatureLabel.NOT_INTERPRETABLE.value)
    return pd.Series(labels, index=frame.index, dtype=object, name="label")


def label_counts(labels: pd.Series) -> dict[str, int]:
    """How many features carry each label (every label listed, in FeatureLabel's order)."""
    counts = labels.value_counts()
    return {label.value: int(counts.get(label.value, 0)) for label in FeatureLabel}
