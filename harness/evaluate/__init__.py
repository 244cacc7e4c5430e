"""evaluate stage: FADE scores (Clarity, Responsiveness, Purity, Faithfulness) of feature descriptions.

`evaluate_descriptions` scores a descriptions table on a site; `read_descriptions` reads one from a file.
The metrics are pure functions in `metrics`, the sample choice in `sampling`, the score types in `scores`.
"""

from harness.evaluate.descriptions_io import read_descriptions
from harness.evaluate.pipeline import EvaluationResult, evaluate_descriptions
from harness.evaluate.scores import FeatureScores, Reason, Score, summarise
from harness.evaluate.store import FeatureResult, ResultStore, scores_table

__all__ = [
    "EvaluationResult",
    "FeatureResult",
    "FeatureScores",
    "Reason",
    "ResultStore",
    "Score",
    "evaluate_descriptions",
    "read_descriptions",
    "scores_table",
    "summarise",
]
