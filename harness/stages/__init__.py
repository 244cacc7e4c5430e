"""Running a variant's stages: corpus -> activations -> explain -> evaluate (FADE) -> other scorers.

The CLI, tracking (`harness.track`) and the search all run the stages through these functions; nothing
here knows about MLflow. The modules stay light to import: each stage imports the model, the LLM layer or
FADE when it runs.
"""

from harness.stages.describe import describe_features
from harness.stages.evaluate import ChunkCallback, evaluate_in_chunks
from harness.stages.follow import Lead, follow_variants, run_ledger, variant_workdir
from harness.stages.metrics import floor_metrics, pooled_metrics, score_metrics
from harness.stages.score import score_with_other_scorers
from harness.stages.shared import SharedStages, StageTimer
from harness.stages.tables import llm_failed_features, per_feature_table, rated_samples_table, top_examples_table

__all__ = [
    "ChunkCallback",
    "Lead",
    "SharedStages",
    "StageTimer",
    "describe_features",
    "evaluate_in_chunks",
    "floor_metrics",
    "follow_variants",
    "llm_failed_features",
    "per_feature_table",
    "rated_samples_table",
    "run_ledger",
    "pooled_metrics",
    "score_metrics",
    "score_with_other_scorers",
    "top_examples_table",
    "variant_workdir",
]
