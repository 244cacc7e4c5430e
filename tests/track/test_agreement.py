"""Agreement between scorers: known-answer Spearman correlations, scipy equivalence, and what a parent run gets."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy.stats import spearmanr

from harness.artifacts import SCORER_AGREEMENT_PLOT, SCORER_AGREEMENT_TABLE
from harness.track._ranks import average_ranks
from harness.track.agreement import log_scorer_agreement, rank_correlations, score_names
from harness.track.runs import log_metrics, variant_run
from harness.track.store import default_tracking_uri, ensure_experiment


def _means(**columns) -> pd.DataFrame:
    return pd.DataFrame({f"{name}_mean": values for name, values in columns.items()})


def test_same_order_is_one_and_reversed_order_is_minus_one():
    agreement = rank_correlations(
        _means(clarity=[0.9, 0.5, 0.7, 0.1], purity=[0.8, 0.2, 0.3, 0.0], embedding=[0.1, 0.6, 0.4, 0.9])
    )
    assert agreement.scores == ["clarity", "purity", "embedding"] and agreement.variants == 4
    assert agreement.pair("clarity", "purity").rho == pytest.approx(1.0)
    assert agreement.pair("embedding", "clarity").rho == pytest.approx(-1.0)
    reversed_pair = agreement.pair("purity", "embedding")
    assert reversed_pair.rho == pytest.approx(-1.0) and reversed_pair.variants == 4 and reversed_pair.reason is None
    assert [(pair.first, pair.second) for pair in agreement.pairs] == [
        ("clarity", "purity"),
        ("clarity", "embedding"),
        ("purity", "embedding"),
    ]


def test_ties_share_the_mean_rank_and_give_the_hand_computed_rho():
    assert average_ranks(np.array([0.2, 0.5, 0.5, 0.9])).tolist() == [1.0, 2.5, 2.5, 4.0]
    # ranks x = 1, 2.5, 2.5, 4 and y = 1, 3, 2, 4: deviations from 2.5 are (-1.5, 0, 0, 1.5) and
    # (-1.5, .5, -.5, 1.5); covariance sum 4.5, squares 4.5 and 5, so rho = 4.5 / sqrt(4.5 * 5) = 0.9487
    agreement = rank_correlations(_means(clarity=[0.2, 0.5, 0.5, 0.9], purity=[0.1, 0.6, 0.3, 0.8]))
    assert agreement.pairs[0].rho == pytest.approx(4.5 / np.sqrt(4.5 * 5))


def test_pairs_use_only_the_variants_defining_both_scores():
    # variant 3 lacks purity, variant 4 lacks clarity: three variants are left, in the same order
    agreement = rank_correlations(_means(clarity=[0.1, 0.2, 0.3, 0.9, None], purity=[0.5, 0.6, 0.7, None, 0.0]))
    assert agreement.pairs[0].rho == pytest.approx(1.0) and agreement.pairs[0].variants == 3
    assert agreement.variants == 5


def test_undefined_pairs_say_why():
    agreement = rank_correlations(
        _means(
            clarity=[0.1, 0.4, 0.9, 0.3],
            purity=[0.5, 0.5, 0.5, 0.5],
            faithfulness=[0.2, None, np.nan, 0.4],
            embedding=[0.7, 0.7, 0.7, 0.7],
        ),
        scores=["clarity", "purity", "faithfulness", "embedding", "fuzzing"],
    )
    constant = agreement.pair("clarity", "purity")
    assert (
        constant.rho is None
        and constant.variants == 4
        and constant.reason == "purity is constant across the 4 variants"
    )
    assert agreement.pair("purity", "embedding").reason == "purity and embedding are constant across the 4 variants"
    few = agreement.pair("clarity", "faithfulness")
    assert few.rho is None and few.variants == 2 and few.reason == "fewer than 3 variants define both scores (2)"
    absent = agreement.pair("fuzzing", "clarity")
    assert absent.rho is None and absent.variants == 0
    assert len(agreement.pairs) == 10


def test_two_variants_are_too_few_even_when_they_differ():
    pair = rank_correlations(_means(clarity=[0.1, 0.9], purity=[0.2, 0.8])).pairs[0]
    assert pair.rho is None and pair.reason == "fewer than 3 variants define both scores (2)"


def test_matches_scipy_spearmanr_on_random_means_with_ties_and_gaps():
    rng = np.random.default_rng(7)
    for trial in range(20):
        count = int(rng.integers(3, 30))
        first = rng.choice([0.1, 0.2, 0.3, 0.5, 0.8], size=count) if trial % 2 else rng.random(count)
        second = first + rng.normal(0, 0.3, count)
        second[rng.random(count) < 0.2] = np.nan
        both = ~np.isnan(second)
        pair = rank_correlations(_means(clarity=first, purity=second)).pairs[0]
        if both.sum() < 3 or np.ptp(first[both]) == 0:
            assert pair.rho is None
            continue
        assert pair.variants == both.sum()
        assert pair.rho == pytest.approx(spearmanr(first[both], second[both]).statistic, abs=1e-12)


def test_score_names_put_fade_first_then_the_others_by_name_and_ignore_other_columns():
    table = pd.DataFrame(
        columns=[
            "simulation_mean",
            "embedding_mean",
            "purity_mean",
            "cost_usd",
            "clarity_mean",
            "purity_ci_low",
            "aggregate_mean",
        ]
    )
    assert score_names(table) == ["clarity", "purity", "embedding", "simulation"]


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(tmp_path / "mlruns")
    yield ensure_experiment("agreement", uri), MlflowClient(uri)
    mlflow.set_tracking_uri(None)


def test_a_parent_run_gets_the_heatmap_table_and_metrics(tracking):
    experiment_id, client = tracking
    means = _means(
        clarity=[0.9, 0.6, 0.3, 0.2],
        purity=[0.7, 0.5, 0.4, 0.1],
        embedding=[0.2, 0.3, 0.35, 0.8],
        faithfulness=[None, None, None, None],
    )
    with variant_run(experiment_id, "parent", "comparison", role="comparison") as parent:
        logged = log_scorer_agreement(means)
    assert logged is not None and logged.scores == ["clarity", "purity", "embedding"]  # faithfulness has no value
    run = client.get_run(parent.run_id)
    assert run.data.metrics == {
        "rank_corr.clarity.purity": pytest.approx(1.0),
        "rank_corr.clarity.embedding": pytest.approx(-1.0),
        "rank_corr.purity.embedding": pytest.approx(-1.0),
    }
    table = json.loads(Path(client.download_artifacts(parent.run_id, SCORER_AGREEMENT_TABLE)).read_text())
    assert table["columns"] == ["first", "second", "rho", "variants", "reason"]
    assert [row[:2] + row[3:] for row in table["data"]] == [
        ["clarity", "purity", 4, None],
        ["clarity", "embedding", 4, None],
        ["purity", "embedding", 4, None],
    ]
    png = Path(client.download_artifacts(parent.run_id, SCORER_AGREEMENT_PLOT)).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_nothing_is_logged_with_fewer_than_two_scores_with_values(tracking):
    experiment_id, client = tracking
    with variant_run(experiment_id, "parent", "comparison", role="comparison") as parent:
        log_metrics({"kept": 1.0})
        assert log_scorer_agreement(_means(clarity=[0.1, 0.5, 0.9], purity=[None, None, None])) is None
    assert client.list_artifacts(parent.run_id) == [] and client.get_run(parent.run_id).data.metrics == {"kept": 1.0}


def test_the_text_table_shows_each_pair_once_and_says_why_a_cell_is_empty():
    from harness.track.agreement import format_agreement

    text = format_agreement(
        rank_correlations(_means(clarity=[0.1, 0.5, 0.9, 0.3], purity=[0.2, 0.4, 0.8, 0.1], embedding=[0.5] * 4))
    )
    lines = text.splitlines()
    assert lines[0].startswith("Spearman rank correlation of scorers across 4 variants")
    assert lines[1].split() == ["clarity", "purity"]
    assert lines[2].split() == ["purity", "+0.80", "(4)"]
    assert lines[3].split() == ["embedding", "—", "(4)", "—", "(4)"]
    assert lines[4:] == [
        "undefined:",
        "  clarity vs embedding: embedding is constant across the 4 variants",
        "  purity vs embedding: embedding is constant across the 4 variants",
    ]
