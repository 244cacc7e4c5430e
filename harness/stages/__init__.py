"""Running a variant's stages: corpus -> activations -> explain -> evaluate (FADE) -> other scorers.

`run_variant` (harness.stages._pipeline) holds their one order; the CLI, tracking (`harness.track`, an
observer of it), the search and the followers of an `accelerate launch` all run a variant through it. Nothing
here knows about MLflow. The modules stay light to import: each stage imports the model, the LLM layer or
FADE when it runs.
"""

from harness.stages._describe import describe_features
from harness.stages._evaluate import ChunkCallback, evaluate_in_chunks
from harness.stages._follow import Lead, follow_variants
from harness.stages._metrics import floor_metrics, pooled_metrics, score_metrics, usage_metrics, variant_metrics
from harness.stages._pipeline import (
    Alone,
    Team,
    VariantObserver,
    VariantResult,
    run_ledger,
    run_variant,
    variant_workdir,
)
from harness.stages._score import score_with_other_scorers
from harness.stages._shared import SharedStages, StageTimer
from harness.stages._tables import (
    corpus_samples_table,
    llm_failed_features,
    per_feature_table,
    rated_samples_table,
    sample_tables,
)

__all__ = [
    "Alone",
    "ChunkCallback",
    "Lead",
    "SharedStages",
    "StageTimer",
    "corpus_samples_table",
    "describe_features",
    "evaluate_in_chunks",
    "floor_metrics",
    "follow_variants",
    "llm_failed_features",
    "per_feature_table",
    "rated_samples_table",
    "run_ledger",
    "sample_tables",
    "pooled_metrics",
    "score_metrics",
    "score_with_other_scorers",
    "Team",
    "usage_metrics",
    "VariantObserver",
    "VariantResult",
    "run_variant",
    "variant_metrics",
    "variant_workdir",
]
