"""evaluate stage: FADE scores (Clarity, Responsiveness, Purity, Faithfulness) of feature descriptions.

`evaluate_descriptions` scores a descriptions table on a site; `read_descriptions` reads one from a file.
The metrics are pure functions in `metrics`, the sample choice in `sampling`, the score types in `scores`.
The names below that need the model, the LLM layer or the result store are imported on first use, so
importing `harness.evaluate.metrics` alone stays light (numpy only).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from harness.evaluate.scores import FeatureScores, Score, summarise

_LAZY = {
    "EvaluationResult": "harness.evaluate.pipeline",
    "evaluate_descriptions": "harness.evaluate.pipeline",
    "FeatureResult": "harness.evaluate.store",
    "ResultStore": "harness.evaluate.store",
    "scores_table": "harness.evaluate.store",
    "read_descriptions": "harness.evaluate.descriptions_io",
}

if TYPE_CHECKING:
    from harness.evaluate.descriptions_io import read_descriptions
    from harness.evaluate.pipeline import EvaluationResult, evaluate_descriptions
    from harness.evaluate.store import FeatureResult, ResultStore, scores_table


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness.evaluate' has no attribute {name!r}")


__all__ = [
    "EvaluationResult",
    "FeatureResult",
    "FeatureScores",
    "ResultStore",
    "Score",
    "evaluate_descriptions",
    "read_descriptions",
    "scores_table",
    "summarise",
]
