"""The controls table and the feature labels: known answers on constructed runs."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from harness.evaluate.labels import FeatureLabel, feature_labels, label_counts
from harness.track.compare import build_comparison, format_comparison, format_ranking
from harness.track.controls import DOES_NOT_SEPARATE, NO_TEST, SEPARATES, control_tests, flagged_scores, mann_whitney
from harness.track.paired import holm

N = 30


def _runs(trained: dict, random_model: dict, shuffled: dict) -> tuple[pd.DataFrame, dict]:
    """Three runs: a trained variant (key K), its random-model control (other site) and its shuffled control."""
    table = pd.DataFrame(
        [
            {"variant": "top-tokens", "run_id": "t", "tag:harness.variant_key": "K", "param:model.weights": "trained"},
            {"variant": "random-model", "run_id": "r", "tag:harness.variant_key": "R", "param:model.weights": "random",
             "tag:harness.control": "random-model", "tag:harness.control_of": "K"},
            {"variant": "shuffled", "run_id": "s", "tag:harness.variant_key": "S", "param:model.weights": "trained",
             "tag:harness.control": "shuffled", "tag:harness.control_of": "K"},
        ]
    )  # fmt: skip
    features = {
        run_id: pd.DataFrame({"feature": range(N), **columns})
        for run_id, columns in (("t", trained), ("r", random_model), ("s", shuffled))
    }
    for run_id, frame in features.items():
        for score in ("clarity", "intruder"):
            if score in frame:
                table.loc[table["run_id"] == run_id, f"{score}_mean"] = frame[score].mean()
    return table, features


def test_a_constructed_shift_separates_and_noise_does_not():
    rng = np.random.default_rng(0)
    trained = rng.uniform(0.4, 0.9, N)
    table, features = _runs(
        {"clarity": trained, "intruder": rng.uniform(0, 1, N)},
        {"clarity": trained - 0.35 + rng.normal(0, 0.02, N), "intruder": rng.uniform(0, 1, N)},  # shifted; noise
        {"clarity": trained - 0.2, "intruder": None},
    )
    comparison = build_comparison(table, features, weights={"clarity": 1.0})
    tests = {(item.criterion, item.control): item for item in comparison.controls}
    assert tests[("clarity", "random-model")].verdict == SEPARATES
    assert tests[("clarity", "random-model")].test == "mann-whitney" and tests[("clarity", "random-model")].effect > 0.8
    assert tests[("intruder", "random-model")].verdict == DOES_NOT_SEPARATE  # both uniform noise
    assert tests[("clarity", "shuffled")].verdict == SEPARATES and tests[("clarity", "shuffled")].test == "wilcoxon"
    assert ("intruder", "shuffled") not in tests  # reads no description: the shuffled control cannot move it
    assert tests[("aggregate", "random-model")].verdict == SEPARATES
    # scipy's own Mann-Whitney p-value, Holm over the score's two tests (random-model, shuffled)
    raw = mannwhitneyu(features["t"]["clarity"], features["r"]["clarity"], alternative="two-sided").pvalue
    clarity = [tests[("clarity", "random-model")], tests[("clarity", "shuffled")]]
    assert clarity[0].p_value == pytest.approx(raw)
    assert [item.p_adjusted for item in clarity] == pytest.approx(holm([item.p_value for item in clarity]))
    assert list(comparison.flags) == ["intruder"]
    text = format_comparison(comparison, "aggregate")
    assert "intruder(!)" in text and "random-model (mann-whitney)" in text and "does not separate" in text
    # Random model and trained model are different sites: never paired in the ranking.
    by_clarity = comparison.ranked("clarity").set_index("variant")
    assert "different feature sites" in (by_clarity.loc["random-model", "vs_above"].reason or "")


def test_a_control_that_scores_higher_does_not_separate_and_is_said_so():
    first, second = np.linspace(0, 0.4, N), np.linspace(0.5, 1, N)
    p_value, effect = mann_whitney(first, second)
    assert effect == pytest.approx(-1.0) and p_value < 1e-6
    table, features = _runs({"clarity": first}, {"clarity": second}, {"clarity": first})
    tests = control_tests(table, {"clarity": {run: frame["clarity"] for run, frame in features.items()}})
    random = next(item for item in tests if item.control == "random-model")
    assert random.verdict == DOES_NOT_SEPARATE and "control scores significantly higher" in random.note
    assert "does not separate top-tokens from its random-model control" in flagged_scores(tests)["clarity"]


def test_too_few_features_or_a_missing_counterpart_is_no_test():
    table, features = _runs({"clarity": np.ones(N)}, {"clarity": np.zeros(N)}, {"clarity": np.zeros(N)})
    few = {"clarity": {run: frame["clarity"].head(5) for run, frame in features.items()}}
    assert all(item.verdict == NO_TEST for item in control_tests(table, few))
    orphan = table[table["run_id"] != "t"]
    tests = control_tests(orphan, {"clarity": {run: frame["clarity"] for run, frame in features.items()}})
    assert all(item.verdict == NO_TEST and "not among the runs" in item.note for item in tests)
    assert flagged_scores(tests) == {}


def test_feature_labels_known_answers():
    per_feature = pd.DataFrame(
        {
            "feature": [0, 1, 2, 3, 4, 5],
            "clarity": [0.8, 0.3, 0.3, None, 0.9, 0.2],
            "clarity_reason": [None, None, None, "no_natural_samples", None, None],
            "responsiveness": [0.7, 0.6, 0.2, 0.5, None, 0.1],
            "responsiveness_reason": [None, None, None, None, "no_rated_2_samples", None],
            "intruder": [0.1, 0.8, 0.3, 0.9, 0.9, None],
        }
    )
    labels = feature_labels(per_feature).tolist()
    assert labels == [
        FeatureLabel.WELL_DESCRIBED,  # passes the gate, whatever intruder says
        FeatureLabel.BADLY_DESCRIBED,  # fails the gate (clarity 0.3), intruder 0.8
        FeatureLabel.NOT_INTERPRETABLE,  # fails the gate, intruder 0.3
        FeatureLabel.UNDETERMINED,  # clarity left out (no natural samples)
        FeatureLabel.BADLY_DESCRIBED,  # responsiveness 0 by the description's fault, intruder 0.9
        FeatureLabel.UNDETERMINED,  # fails the gate, no intruder score
    ]
    assert label_counts(feature_labels(per_feature)) == {
        FeatureLabel.WELL_DESCRIBED: 1, FeatureLabel.BADLY_DESCRIBED: 2,
        FeatureLabel.NOT_INTERPRETABLE: 1, FeatureLabel.UNDETERMINED: 2,
    }  # fmt: skip
    assert feature_labels(per_feature, gate_threshold=0.25).tolist()[1] == FeatureLabel.WELL_DESCRIBED


def test_the_ranking_marks_a_flagged_score():
    table = pd.DataFrame(
        [{"variant": "a", "run_id": "a", "clarity_mean": 0.5, "rank": 1, "tied": False, "vs_above": None}]
    )
    assert "clarity(!)" in format_ranking(table, "clarity", {"clarity": "does not separate a from its random-model"})
