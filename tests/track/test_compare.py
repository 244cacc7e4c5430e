"""Ranking of variants: known answers, ties by the paired test vs the row above, weighted aggregate."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.track.compare import format_ranking, rank_variants


def _table():
    return pd.DataFrame(
        [
            {"variant": "a", "clarity_mean": 0.5, "clarity_ci_low": 0.45, "clarity_ci_high": 0.55, "purity_mean": 0.9},
            {"variant": "b", "clarity_mean": 0.8, "clarity_ci_low": 0.75, "clarity_ci_high": 0.85, "purity_mean": 0.1},
            {"variant": "c", "clarity_mean": 0.52, "clarity_ci_low": 0.50, "clarity_ci_high": 0.60, "purity_mean": 0.5},
            {
                "variant": "d",
                "clarity_mean": float("nan"),
                "clarity_ci_low": None,
                "clarity_ci_high": None,
                "purity_mean": 0.2,
            },
        ]
    )


def _features(
    table: pd.DataFrame, score: str, n: int = 30, noise: float = 0.1, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Per-feature tables with exactly the table's means: mean + independent centred noise per variant."""
    rng = np.random.default_rng(seed)
    found = {}
    for row in table.itertuples():
        mean = getattr(row, f"{score}_mean")
        if pd.isna(mean):
            continue
        spread = rng.normal(0, noise, n)
        found[row.run_id] = pd.DataFrame({"feature": range(n), score: mean + spread - spread.mean()})
    return found


def test_rank_by_one_score_with_ties_and_undefined_last():
    table = _table().assign(run_id=lambda frame: frame["variant"])
    ranked = rank_variants(table, by="clarity", features=_features(table, "clarity"))
    assert list(ranked["variant"]) == ["b", "c", "a", "d"]
    # a is c less 0.02 plus noise (sd 0.1 each): no paired difference; b is 0.28 above c; d is undefined.
    assert list(ranked["rank"]) == [1, 2, 2, 4]
    assert list(ranked["tied"]) == [False, False, True, False]
    vs_above = list(ranked["vs_above"])
    assert vs_above[0] is None
    assert vs_above[1].significant and vs_above[1].mean_difference == pytest.approx(0.52 - 0.8)
    assert vs_above[2].significant is False and vs_above[2].features == 30
    assert not vs_above[3].tested and "no per-feature clarity values for d" in vs_above[3].reason
    # Without per-feature scores there is no test: no tie is claimed, whatever the intervals say.
    untested = rank_variants(table, by="clarity")
    assert list(untested["rank"]) == [1, 2, 3, 4] and not untested["tied"].any()


def _per_feature(**scores):
    """A per-feature table: each score a list of values (None = undefined), `<score>_reason` lists optional."""
    n = len(next(iter(scores.values())))
    return pd.DataFrame({"feature": range(n), **scores})


def test_rank_by_weighted_aggregate_is_the_mean_of_the_feature_aggregates():
    table = pd.DataFrame([{"variant": name, "run_id": name, "clarity_mean": 0.5, "purity_mean": 0.5} for name in "abc"])
    features = {
        "a": _per_feature(clarity=[0.5] * 12, purity=[0.9] * 12),
        "b": _per_feature(clarity=[0.8] * 12, purity=[0.1] * 12),
        "c": _per_feature(clarity=[0.52] * 12, purity=[0.5] * 12),
    }
    ranked = rank_variants(table, by="aggregate", weights={"clarity": 1, "purity": 3}, features=features)
    expected = {"a": (0.5 + 2.7) / 4, "b": (0.8 + 0.3) / 4, "c": (0.52 + 1.5) / 4}
    assert list(ranked["variant"]) == ["a", "c", "b"]
    for name, value in expected.items():
        assert math.isclose(ranked.set_index("variant").loc[name, "aggregate_mean"], value)
    assert list(ranked["aggregate_defined"]) == [1.0, 1.0, 1.0] and list(ranked["aggregate_features"]) == [12] * 3
    assert "a" in format_ranking(ranked, "aggregate").splitlines()[1]
    # Without per-feature tables there is no aggregate at all (it is defined per feature).
    assert rank_variants(table, by="aggregate")["aggregate_mean"].isna().all()


def test_unknown_score_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot rank by 'clearness'"):
        rank_variants(_table(), by="clearness")
    with pytest.raises(ConfigError, match="unknown score"):
        rank_variants(_table(), by="aggregate", weights={"novelty": 1})


def test_equal_per_feature_values_tie_and_every_comparison_of_the_aggregate_is_tested():
    table = pd.DataFrame([{"variant": name, "run_id": name, "clarity_mean": 0.6} for name in "xyz"])
    same = pd.DataFrame({"feature": range(12), "clarity": np.linspace(0.3, 0.9, 12)})
    features = {"x": same, "y": same.copy(), "z": same.assign(clarity=0.2)}
    by_clarity = rank_variants(table, by="clarity", features=features)
    assert list(by_clarity["rank"]) == [1, 1, 3]
    assert by_clarity["vs_above"][1].p_value == 1.0 and by_clarity["vs_above"][1].mean_difference == 0.0
    by_aggregate = rank_variants(table, by="aggregate", weights={"clarity": 1}, features=features)
    assert list(by_aggregate["rank"]) == [1, 1, 3]
    assert all(item.tested for item in by_aggregate["vs_above"][1:])


def test_the_terminal_table_shows_fade_with_intervals_then_the_other_scorers_means():
    table = _table().assign(detection_mean=[0.9, 0.7, None, 0.1], embedding_mean=[0.6, 0.65, 0.7, 0.75])
    lines = format_ranking(rank_variants(table, by="detection"), "detection").splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[:5]]
    assert cells[0] == [
        "rank",
        "variant",
        "clarity",
        "purity",
        "detection",
        "embedding",
        "cost_usd",
        "features",
        "vs above",
    ]
    assert cells[1] == ["1", "a", "0.500 [0.450, 0.550]", "0.900 [-, -]", "0.900", "0.600", "-", "-"]
    assert cells[4][:2] == ["4", "c"] and cells[4][4:6] == ["-", "0.700"]  # undefined detection ranks last
    assert cells[2][-1] == "no test [a]"  # no per-feature scores: the reason is noted under the table
    assert "other scorers: means" in lines[5]
    assert lines[6].strip() == "no test [a]: no per-feature detection values for b"


def test_the_terminal_table_shows_the_paired_comparison_with_the_row_above():
    table = _table().assign(run_id=lambda frame: frame["variant"])
    lines = format_ranking(
        rank_variants(table, by="clarity", features=_features(table, "clarity")), "clarity"
    ).splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[:5]]
    assert [row[0] for row in cells[1:]] == ["1", "2", "2=", "4"]
    assert re.fullmatch(r"-0\.280 n=30 p<0\.001", cells[2][-1])
    assert re.fullmatch(r"-0\.020 n=30 p=0\.\d{3}", cells[3][-1])
    assert "Holm-adjusted" in lines[5]


def test_scores_of_different_conventions_are_named_and_never_paired():
    from harness.track.compare import score_conventions

    table = pd.DataFrame(
        [
            {"variant": "ours", "run_id": "a", "detection_mean": 0.8, "param:scorers.convention": "harness"},
            {"variant": "delphi's", "run_id": "b", "detection_mean": 0.6, "param:scorers.convention": "delphi"},
            {"variant": "old run", "run_id": "c", "detection_mean": 0.5},  # logged before the setting: ours
        ]
    )
    rng = np.random.default_rng(2)
    features = {run: pd.DataFrame({"feature": range(20), "detection": rng.uniform(0, 1, 20)}) for run in "abc"}
    ranked = rank_variants(table, by="detection", features=features)
    assert all("different scoring conventions" in item.reason for item in ranked["vs_above"][1:])
    from harness.track.compare import paired_tests

    pairs = {
        (item.variant, item.reference): item for item in paired_tests(ranked, "detection", None, features, pairs="all")
    }
    assert pairs[("old run", "ours")].tested  # the same convention: paired
    named = score_conventions(table)["detection"]
    assert "delphi's (eai-delphi 0.1.3" in named and "for delphi's" in named and "not compared across" in named
    assert "detection: computed by" in format_ranking(ranked, "detection")
    same = table.assign(**{"param:scorers.convention": "delphi"})
    assert score_conventions(same) == {"detection": "delphi's (eai-delphi 0.1.3; pooled headline <score>_pooled)"}
