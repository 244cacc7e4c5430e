"""Ranking of variants: known answers, ties by overlapping intervals, weighted aggregate."""

import math
import re

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
            {"variant": "d", "clarity_mean": float("nan"), "clarity_ci_low": None, "clarity_ci_high": None, "purity_mean": 0.2},
        ]
    )


def test_rank_by_one_score_with_ties_and_undefined_last():
    ranked = rank_variants(_table(), by="clarity")
    assert list(ranked["variant"]) == ["b", "c", "a", "d"]
    # c's interval [0.50, 0.60] overlaps a's [0.45, 0.55]: a ties with c; b is alone; d is undefined.
    assert list(ranked["rank"]) == [1, 2, 2, 4]
    assert list(ranked["tied"]) == [False, False, True, False]


def test_rank_by_weighted_aggregate():
    ranked = rank_variants(_table(), by="aggregate", weights={"clarity": 1, "purity": 3})
    expected = {"a": (0.5 + 2.7) / 4, "b": (0.8 + 0.3) / 4, "c": (0.52 + 1.5) / 4}
    assert list(ranked["variant"][:3]) == ["a", "c", "b"]
    for name, value in expected.items():
        assert math.isclose(ranked.set_index("variant").loc[name, "aggregate_mean"], value)
    assert "a" in format_ranking(ranked, "aggregate").splitlines()[1]


def test_unknown_score_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot rank by 'clearness'"):
        rank_variants(_table(), by="clearness")
    with pytest.raises(ConfigError, match="unknown score"):
        rank_variants(_table(), by="aggregate", weights={"novelty": 1})


def test_undefined_means_count_as_zero_in_the_aggregate_and_equal_values_tie():
    from harness.track.compare import weighted_aggregate

    assert weighted_aggregate({"clarity": 0.8, "faithfulness": None}, {"clarity": 1, "faithfulness": 1}) == 0.4
    table = pd.DataFrame(
        [
            {"variant": "x", "clarity_mean": 0.6, "faithfulness_mean": None},
            {"variant": "y", "clarity_mean": 0.6, "faithfulness_mean": None},
            {"variant": "z", "clarity_mean": 0.2, "faithfulness_mean": 0.2},
        ]
    )
    ranked = rank_variants(table, by="aggregate")
    assert list(ranked["variant"]) == ["x", "y", "z"]
    assert list(ranked["rank"]) == [1, 1, 3]
    assert list(ranked["aggregate_mean"]) == [0.3, 0.3, 0.2]


def test_the_terminal_table_shows_fade_with_intervals_then_the_other_scorers_means():
    table = _table().assign(detection_mean=[0.9, 0.7, None, 0.1], embedding_mean=[0.6, 0.65, 0.7, 0.75])
    lines = format_ranking(rank_variants(table, by="detection"), "detection").splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[:-1]]
    assert cells[0] == ["rank", "variant", "clarity", "purity", "detection", "embedding", "cost_usd", "features"]
    assert cells[1] == ["1", "a", "0.500 [0.450, 0.550]", "0.900 [-, -]", "0.900", "0.600", "-", "-"]
    assert cells[4][:2] == ["4", "c"] and cells[4][4:6] == ["-", "0.700"]  # undefined detection ranks last
    assert "other scorers: means" in lines[-1]
