"""Paired comparisons of variants: known answers on constructed score tables, Holm, edge cases, the
pairing itself, and the table the comparison run logs (real MLflow sqlite store)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.stats import wilcoxon

from harness.artifacts import PAIRED_COMPARISONS_TABLE
from harness.evaluate.scores import summarise
from harness.stages import score_metrics
from harness.track.compare import build_comparison, feature_scores, load_comparison, log_comparison, rank_variants
from harness.track.paired import (
    ALPHA,
    PairedComparison,
    compare_variants,
    format_pairs,
    holm,
    paired_values,
    signed_rank_test,
)
from harness.track.runs import log_metrics, log_params, variant_run
from harness.track.store import default_tracking_uri, ensure_experiment

FEATURES = 40


def _series(values) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=range(len(values)))


def _adjacent(*columns, **options) -> list[PairedComparison]:
    """Variants v0 (best) .. vN given as per-feature value arrays, each compared with the one above."""
    ranked = [(f"v{i}", f"run{i}") for i in range(len(columns))]
    return compare_variants("clarity", ranked, {f"run{i}": _series(c) for i, c in enumerate(columns)}, **options)


def test_a_constant_shift_on_every_feature_is_detected():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, FEATURES)
    (exact,) = _adjacent(base, base - 0.05)  # every feature exactly 0.05 lower
    assert exact.significant and exact.p_adjusted < 1e-6
    assert exact.mean_difference == pytest.approx(-0.05) and exact.rank_biserial == -1.0
    assert exact.features == FEATURES and not exact.tied
    (noisy,) = _adjacent(base, base - 0.05 + rng.normal(0, 0.02, FEATURES))  # the shift under some noise
    assert noisy.significant and noisy.mean_difference == pytest.approx(-0.05, abs=0.01)


def test_pure_noise_with_no_shift_is_not_significant():
    rng = np.random.default_rng(7)
    above, below = rng.uniform(0, 1, FEATURES), rng.uniform(0, 1, FEATURES)
    (comparison,) = _adjacent(above, below)
    assert comparison.tested and not comparison.significant and comparison.tied
    assert comparison.p_value == pytest.approx(wilcoxon(below - above, zero_method="pratt").pvalue)
    assert comparison.p_adjusted == comparison.p_value  # a family of one


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_the_false_positive_rate_over_many_null_tables_is_at_most_alpha(kind):
    """Two variants that differ only by noise, 600 times: the test calls them different about alpha of the
    time or less (FADE ratings are often discrete, with many tied and zero differences: checked too)."""
    rng = np.random.default_rng(2024)
    trials, rejected = 600, 0
    for _ in range(trials):
        n = int(rng.integers(10, 80))
        difficulty = rng.uniform(0, 1, n)  # shared by both variants: the pairing
        if kind == "continuous":
            first, second = difficulty + rng.normal(0, 0.1, n), difficulty + rng.normal(0, 0.1, n)
        else:
            first, second = np.round(np.clip(difficulty + rng.normal(0, 0.3, (2, n)), 0, 1) * 2) / 2
        (comparison,) = _adjacent(first, second)
        rejected += bool(comparison.significant)
    rate = rejected / trials
    standard_error = np.sqrt(ALPHA * (1 - ALPHA) / trials)
    assert rate <= ALPHA + 2.5 * standard_error, rate
    assert rate > 0.005, "a test that never rejects is not calibrated either"


def test_holm_changes_the_decision_against_unadjusted_p_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # monotone step-down
    assert holm([0.04, None, 0.001]) == pytest.approx([0.04, None, 0.002])  # untested: outside the family

    # Three adjacent comparisons, each built to have a raw p-value between alpha/3 and alpha: every one is
    # significant alone, none after Holm (the smallest times 3 is already above alpha).
    n = 20
    ranks = np.arange(1, n + 1, dtype=float)

    def differences_with_p_in_band() -> np.ndarray:
        for negatives in range(1, n):  # make ranks 1..k negative until the p-value falls in the band
            signs = np.where(ranks <= negatives, -1.0, 1.0)
            p = wilcoxon(ranks * signs / 100).pvalue
            if ALPHA / 3 < p < ALPHA:
                return ranks * signs / 100
        raise AssertionError("no sign pattern with a p-value in the band")

    found = differences_with_p_in_band()
    p_raw = wilcoxon(found).pvalue
    columns = [np.full(n, 0.5)]
    for _ in range(3):
        columns.append(columns[-1] - found)  # each variant lower than the one above by `found`
    comparisons = _adjacent(*columns)
    assert [c.p_value for c in comparisons] == pytest.approx([p_raw] * 3)
    assert all(c.p_value < ALPHA for c in comparisons)  # unadjusted: all three different
    assert [c.p_adjusted for c in comparisons] == pytest.approx([min(1.0, 3 * p_raw)] * 3)
    assert not any(c.significant for c in comparisons) and all(c.tied for c in comparisons)  # Holm: all tied
    # With only one comparison in the family the same differences are significant.
    assert _adjacent(columns[0], columns[1])[0].significant


def test_pairing_matters_unpaired_intervals_overlap_but_the_paired_test_is_clear():
    """Features differ a lot in how hard they are; the better variant is better on nearly every one of them."""
    rng = np.random.default_rng(5)
    difficulty = rng.uniform(0.1, 0.9, FEATURES)
    better = np.clip(difficulty + 0.03 + rng.normal(0, 0.01, FEATURES), 0, 1)
    worse = np.clip(difficulty, 0, 1)
    intervals = [summarise(values.tolist(), num_resamples=1000, seed=0) for values in (better, worse)]
    assert intervals[1]["ci_high"] >= intervals[0]["ci_low"], "the unpaired 95% intervals overlap"
    table = pd.DataFrame([
        {"variant": name, "run_id": name, **score_metrics(pd.DataFrame({"clarity": values}), 1000, 0, ("clarity",))}
        for name, values in (("better", better), ("worse", worse))
    ])  # fmt: skip
    features = {name: pd.DataFrame({"feature": range(FEATURES), "clarity": values})
                for name, values in (("better", better), ("worse", worse))}  # fmt: skip
    ranked = rank_variants(table, by="clarity", features=features)
    assert list(ranked["variant"]) == ["better", "worse"]
    comparison = ranked["vs_above"][1]
    assert comparison.significant and comparison.p_adjusted < 1e-4
    assert list(ranked["rank"]) == [1, 2] and not ranked["tied"][1]
    # Shuffling which feature is which breaks the pairing: the same values are then no longer distinguishable.
    shuffled = {**features, "worse": features["worse"].assign(feature=rng.permutation(FEATURES))}
    assert rank_variants(table, by="clarity", features=shuffled)["tied"][1]


def test_too_few_paired_features_means_no_test_neither_tie_nor_win():
    rng = np.random.default_rng(3)
    few = rng.uniform(0, 1, 9)
    (comparison,) = _adjacent(few, few - 0.3)
    assert not comparison.tested and comparison.significant is None and not comparison.tied
    assert comparison.features == 9 and comparison.reason == "only 9 paired features define clarity (a test needs 10)"
    assert comparison.p_adjusted is None and comparison.mean_difference is None
    assert _adjacent(few, few - 0.3, min_features=5)[0].significant  # the setting moves the threshold


def test_identical_scores_tie_with_p_one():
    values = np.linspace(0, 1, 15)
    (comparison,) = _adjacent(values, values.copy())
    assert comparison.p_value == 1.0 and comparison.mean_difference == 0.0 and comparison.rank_biserial == 0.0
    assert comparison.tied
    assert signed_rank_test(np.zeros(12)) == (1.0, 0.0)


def test_undefined_scores_are_excluded_pairwise():
    first = pd.Series([0.1, np.nan, 0.3, 0.4, None, 0.6], index=[0, 1, 2, 3, 4, 5])
    second = pd.Series([0.2, 0.2, np.nan, 0.5, 0.5, 0.7, 0.9], index=[0, 1, 2, 3, 4, 5, 6])
    a, b = paired_values(first, second)
    assert a.tolist() == [0.1, 0.4, 0.6] and b.tolist() == [0.2, 0.5, 0.7]  # features 0, 3, 5 only
    rng = np.random.default_rng(9)
    above, below = rng.uniform(0, 1, 30), rng.uniform(0, 1, 30)
    above[:5], below[5:12] = np.nan, np.nan
    (comparison,) = _adjacent(above, below)
    assert comparison.features == 18
    kept = ~np.isnan(above) & ~np.isnan(below)
    assert comparison.p_value == pytest.approx(wilcoxon(below[kept] - above[kept], zero_method="pratt").pvalue)
    assert comparison.mean_difference == pytest.approx(np.mean(below[kept] - above[kept]))


def test_variants_on_different_feature_sites_are_not_paired():
    values = np.linspace(0, 1, 20)
    ranked = [("a", "run0"), ("b", "run1")]
    (comparison,) = compare_variants(
        "clarity", ranked, {"run0": _series(values), "run1": _series(values - 0.2)}, sites={"run0": "x", "run1": "y"}
    )
    assert not comparison.tested and "different feature sites" in comparison.reason


def test_every_pair_is_one_holm_family():
    rng = np.random.default_rng(11)
    base = rng.uniform(0.2, 0.8, FEATURES)
    columns = [base + 0.1, base + rng.normal(0, 0.05, FEATURES), base + rng.normal(0, 0.05, FEATURES)]
    ranked = [(f"v{i}", f"run{i}") for i in range(3)]
    pairs = compare_variants("clarity", ranked, {f"run{i}": _series(c) for i, c in enumerate(columns)}, pairs="all")
    assert [(p.variant, p.reference) for p in pairs] == [("v1", "v0"), ("v2", "v0"), ("v2", "v1")]
    assert [p.p_adjusted for p in pairs] == pytest.approx(holm([p.p_value for p in pairs]))
    assert pairs[0].significant and pairs[1].significant and not pairs[2].significant
    text = format_pairs(pairs)
    assert text.splitlines()[0].split()[:3] == ["variant", "vs", "n"] and "Holm" in text.splitlines()[-1]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A real sqlite store: three variant runs with per-feature tables (tracking contract) under a parent
    comparison run that logged the paired table."""
    uri = default_tracking_uri(tmp_path_factory.mktemp("mlruns"))
    experiment_id = ensure_experiment("paired", uri)
    rng = np.random.default_rng(4)
    base = rng.uniform(0.2, 0.8, FEATURES)
    variants = {
        "best": base + 0.1,
        "second": base + rng.normal(0, 0.02, FEATURES),
        "third": base + rng.normal(0, 0.02, FEATURES),
    }
    rows = []
    with variant_run(experiment_id, "comparison-key", "config", role="comparison") as parent:
        for name, clarity in variants.items():
            purity = np.where(np.arange(FEATURES) % 4 == 0, np.nan, clarity)  # undefined on some features
            per_feature = pd.DataFrame({"feature": range(FEATURES), "clarity": clarity, "purity": purity})
            with variant_run(experiment_id, f"key-{name}", name, parent_run_id=parent.run_id) as run:
                metrics = score_metrics(per_feature, 200, 0, ("clarity", "purity"))
                log_metrics(metrics)
                mlflow.log_table(per_feature.astype(object).where(per_feature.notna(), None), "tables/per_feature.json")
            rows.append({"variant": name, "run_id": run.run_id, **metrics})
        features = feature_scores([row["run_id"] for row in rows], uri)
        comparison = build_comparison(pd.DataFrame(rows), features, weights={"clarity": 1, "purity": 1})
        log_comparison(comparison)
        comparisons = comparison.paired()
    yield {"uri": uri, "parent": parent.run_id, "features": features, "comparisons": comparisons}
    mlflow.set_tracking_uri(None)


def test_the_comparison_run_logs_the_paired_table(logged):
    assert all(frame is not None and len(frame) == FEATURES for frame in logged["features"].values())
    table = json.loads(
        Path(MlflowClient(logged["uri"]).download_artifacts(logged["parent"], PAIRED_COMPARISONS_TABLE)).read_text()
    )
    assert table["columns"] == list(PairedComparison.model_fields)
    read = [PairedComparison(**dict(zip(table["columns"], row))) for row in table["data"]]
    assert read == logged["comparisons"]
    assert [item.criterion for item in read] == ["aggregate", "aggregate", "clarity", "clarity", "purity", "purity"]
    by_clarity = [item for item in read if item.criterion == "clarity"]
    assert by_clarity[0].reference == "best" and by_clarity[0].significant
    assert by_clarity[1].features == FEATURES and not by_clarity[1].significant
    assert all(item.features == FEATURES - FEATURES // 4 for item in read if item.criterion != "clarity")


def test_harness_compare_shows_the_paired_column_and_every_pair(logged, capsys):
    from harness.cli import main

    assert main(["compare", "paired", "--tracking-uri", logged["uri"], "--rank-by", "clarity", "--pairs", "all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["rank", "variant"] and lines[0].endswith("vs above")
    ranks = {line.split()[1]: line.split()[0] for line in lines[1:4]}
    assert ranks["best"] == "1" and sorted(ranks[name] for name in ("second", "third")) == ["2", "2="]
    assert "p<0.001" in next(line for line in lines[1:4] if line.split()[0] == "2")
    start = lines.index("Paired comparisons of every pair by clarity:")
    pairs = [line.split() for line in lines[start + 2 : start + 5]]
    assert [row[-1] for row in pairs].count("different") == 2 and [row[-1] for row in pairs].count("tied") == 1
    assert all(row[2] == str(FEATURES) for row in pairs)
    assert "over the 3 pairs" in lines[start + 5]


def test_variants_on_different_sites_are_never_paired_in_any_output(tmp_path, capsys):
    """A trained model and its random-model control describe other features: harness compare (as the end of
    `harness run` prints it: the same load_comparison), the comparison run's table and the leaderboard all say
    so, and none pairs feature 3 of one with feature 3 of the other."""
    from harness.cli import main
    from leaderboard._read import read_ranked_variants

    uri = default_tracking_uri(tmp_path / "mlruns")
    experiment_id = ensure_experiment("sites", uri)
    rng = np.random.default_rng(8)
    with variant_run(experiment_id, "comparison-sites", "config", role="comparison") as parent:
        for name, weights in (("trained", "trained"), ("random-model", "random")):
            per_feature = pd.DataFrame({"feature": range(FEATURES), "clarity": rng.uniform(0, 1, FEATURES)})
            with variant_run(experiment_id, f"key-{name}", name, parent_run_id=parent.run_id):
                log_params({"model.name": "smollm2-135m", "model.weights": weights})
                log_metrics(score_metrics(per_feature, 100, 0, ("clarity",)))
                mlflow.log_table(per_feature, "tables/per_feature.json")
        comparison = load_comparison(["sites"], uri)
        log_comparison(comparison)
    reason = "different feature sites"
    assert all(reason in item.reason for item in comparison.paired())
    logged = json.loads(Path(MlflowClient(uri).download_artifacts(parent.run_id, PAIRED_COMPARISONS_TABLE)).read_text())
    assert logged["data"] and all(reason in dict(zip(logged["columns"], row))["reason"] for row in logged["data"])
    assert main(["compare", "sites", "--tracking-uri", uri]) == 0
    assert reason in capsys.readouterr().out
    entries = read_ranked_variants(["sites"], uri).entries
    assert all(reason in entry.ranks[criterion].vs_above.reason for entry in entries[1:] for criterion in entry.ranks)
    mlflow.set_tracking_uri(None)
