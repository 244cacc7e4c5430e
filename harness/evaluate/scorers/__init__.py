"""Scorers other autointerp projects use, next to FADE: detection, fuzzing, simulation, embedding, intruder, saebench.

Each is registered by name in SCORERS and scores the same descriptions from the same activation records
(top examples and the activation pool); the LLM scorers ask the FADE rater through the LLM layer (one
concurrent batch per scorer, cached). `run_scorers` runs the enabled ones into one table keyed by feature.
Methods and sources: docs/scorers/.
"""

from harness.evaluate.scorers._answers import (
    RaterValues,
    TokenLogprobs,
    answers_every_id,
    expected_values,
    rater_answer,
    rater_values,
    read_values,
)
from harness.evaluate.scorers._base import (
    SCORERS,
    FeatureScore,
    Scorer,
    SubjectSite,
    described_records,
    least_active_needed,
    run_scorers,
)
from harness.evaluate.scorers._delphi import COUNT_COLUMNS, DelphiScorer, pooled_balanced_accuracy
from harness.evaluate.scorers._examples import LabelledExample, scoring_examples, visible_text
from harness.evaluate.scorers._judging import JudgedItem
from harness.evaluate.scorers._metrics import (
    BinaryScores,
    binary_scores,
    similarity_auroc,
    simulation_correlation,
)

__all__ = [
    "COUNT_COLUMNS",
    "SCORERS",
    "BinaryScores",
    "DelphiScorer",
    "FeatureScore",
    "JudgedItem",
    "LabelledExample",
    "RaterValues",
    "Scorer",
    "SubjectSite",
    "TokenLogprobs",
    "answers_every_id",
    "binary_scores",
    "described_records",
    "expected_values",
    "least_active_needed",
    "pooled_balanced_accuracy",
    "rater_answer",
    "rater_values",
    "read_values",
    "run_scorers",
    "scoring_examples",
    "similarity_auroc",
    "simulation_correlation",
    "visible_text",
]
