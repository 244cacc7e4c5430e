"""Each run's score manifest: what it records, and that compare reads a score from it, not from the registry."""

import json

import mlflow
import numpy as np
import pandas as pd

from harness.artifacts import PER_FEATURE_TABLE, SCORE_MANIFEST
from harness.config import parse_config
from harness.track.compare import build_comparison, run_scores, score_conventions
from harness.track.manifest import ScoreColumn, score_manifest
from harness.track.runs import variant_run
from harness.track.store import ensure_experiment

N = 12


def test_the_manifest_holds_fade_the_floor_and_each_enabled_scorer_as_its_class_declares():
    config = parse_config(
        {"fade": {"clarity_floor": {"enabled": True}}, "scorers": {"enabled": ["intruder", "saebench"]}}
    )
    assert [(column.name, column.kind, column.convention) for column in score_manifest(config)] == [
        ("clarity", "input", None),
        ("responsiveness", "input", None),
        ("purity", "input", None),
        ("faithfulness", "output", None),
        ("clarity_above_floor", "input", None),
        ("intruder", "feature", None),
        ("saebench", "input", "SAEBench's (sae-bench 0.6.0 autointerp)"),
    ]


def test_compare_reads_a_score_the_registry_does_not_know_from_the_run_manifest(tmp_path):
    """A run whose manifest declares 'overlap' (a plugin's, not registered here) gives compare its per-feature
    values; a run logged before manifests is read through the registry, which leaves the column out."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = ensure_experiment("manifest", uri)
    mlflow.set_tracking_uri(uri)
    config = parse_config({})
    run_ids = {}
    for name, with_manifest in (("new", True), ("old", False)):
        with variant_run(experiment, name, name) as tracked:
            values = np.linspace(0.1, 0.9, N)
            table = {"columns": ["feature", "clarity", "overlap", "overlap_reason"],
                     "data": [[feature, value, value / 2, None] for feature, value in enumerate(values)]}  # fmt: skip
            mlflow.log_text(json.dumps(table), PER_FEATURE_TABLE)
            if with_manifest:
                manifest = {"columns": [column.model_dump() for column in score_manifest(config)]}
                manifest["columns"].append({"name": "overlap", "kind": "feature", "distribution": "harness-overlap"})
                mlflow.log_dict(manifest, SCORE_MANIFEST)
            run_ids[name] = tracked.run_id
    mlflow.set_tracking_uri(None)
    features, manifests = run_scores(list(run_ids.values()), uri)
    assert list(features[run_ids["new"]].columns) == ["feature", "clarity", "overlap", "overlap_reason"]
    assert list(features[run_ids["old"]].columns) == ["feature", "clarity"]
    assert manifests[run_ids["old"]] is None
    assert manifests[run_ids["new"]][-1] == ScoreColumn(name="overlap", kind="feature", distribution="harness-overlap")
    rows = pd.DataFrame(
        [
            {"variant": name, "run_id": run_id, "clarity_mean": 0.5, "overlap_mean": 0.25}
            for name, run_id in run_ids.items()
        ]
    )
    comparison = build_comparison(rows, features, manifests=manifests)
    assert comparison.columns["overlap"].kind == "feature"
    assert comparison.rankings["overlap"]["vs_above"].iloc[1].reason.startswith("no per-feature overlap values")
    legacy = build_comparison(rows, features)  # no manifests given: the registry, which knows no 'overlap'
    assert "overlap" not in legacy.columns and score_conventions(rows.assign(saebench_mean=0.5)) == {
        "saebench": "SAEBench's (sae-bench 0.6.0 autointerp)"
    }
