"""Scores of the scorers that run next to FADE (detection, embedding, ...) are leaderboard columns too."""

import json

import mlflow

from harness.track.runs import log_metrics, variant_run
from harness.track.store import ensure_experiment
from leaderboard import LeaderboardDocument, build_site


def test_other_scorer_means_are_columns_and_criteria_but_not_in_the_default_aggregate(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = ensure_experiment("scorers", uri)
    for name, clarity, embedding in (("a", 0.9, 0.1), ("b", 0.5, 0.8)):
        with variant_run(experiment, name, name):
            summary = {"mean": None, "ci_low": None, "ci_high": None, "median": None, "defined": 1.0}
            log_metrics({f"clarity_{k}": (clarity if k != "defined" else 1.0) for k in summary} | {"features": 1})
            log_metrics({f"embedding_{k}": (embedding if k != "defined" else 1.0) for k in summary})
            table = {"columns": ["feature", "description", "clarity", "embedding", "embedding_reason"],
                     "data": [[0, f"description {name}", clarity, embedding, None]]}  # fmt: skip
            mlflow.log_text(json.dumps(table), "tables/per_feature.json")
    index = build_site(["scorers"], uri, tmp_path / "site", progress=False)
    document = LeaderboardDocument.model_validate_json((index.parent / "leaderboard.json").read_text())
    assert document.scores == ["clarity", "embedding"]
    assert document.weights == {"clarity": 1.0}
    entries = {entry.variant: entry for entry in document.variants}
    assert entries["a"].rank == 1 and entries["a"].ranks["embedding"].rank == 2
    assert entries["b"].scores["embedding"].mean == 0.8
    mlflow.set_tracking_uri(None)
