"""evaluate stage: score feature descriptions with FADE (`fade/`) and the other scorers (`scorers/`).

`evaluate_descriptions` runs FADE (Clarity, Responsiveness, Purity, Faithfulness) over a descriptions
table on a site; `read_descriptions` reads a table from a file. Modules shared by every scorer stay here:
the score types and summaries in `scores`, the reading of descriptions in `descriptions_io`. The names
below that need the model, the LLM layer or the result store are imported on first use, so importing
this package, `harness.evaluate.scores` or `harness.evaluate.fade._metrics` stays light (numpy only).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from harness.evaluate.scores import FeatureScores, Score, summarise

_LAZY = {
    "EvaluationResult": "harness.evaluate.fade.pipeline",
    "evaluate_descriptions": "harness.evaluate.fade.pipeline",
    "FeatureResult": "harness.evaluate.fade.results",
    "ResultStore": "harness.evaluate.fade.results",
    "scores_table": "harness.evaluate.fade.results",
    "read_descriptions": "harness.evaluate.descriptions_io",
}

if TYPE_CHECKING:
    from harness.evaluate.descriptions_io import read_descriptions
    from harness.evaluate.fade.pipeline import EvaluationResult, evaluate_descriptions
    from harness.evaluate.fade.results import FeatureResult, ResultStore, scores_table


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
