"""The one aggregate: known answers on constructed per-feature tables (docs/leaderboard.md, "The aggregate")."""

import numpy as np
import pandas as pd
import pytest

from harness.evaluate.aggregate import (
    aggregate_value,
    default_weights,
    excluded_features,
    feature_aggregate,
    summarise_aggregate,
)
from harness.score_names import UNDEFINED_POLICY, Reason, Undefined, undefined_policy
from harness.track.compare import rank_variants, ranking_values

FADE = {"clarity": 1.0, "responsiveness": 1.0, "purity": 1.0, "faithfulness": 1.0}


def _table(rows):
    """rows: feature -> {score: value or a Reason (undefined with that reason)}."""
    records = []
    for feature, scores in rows.items():
        record = {"feature": feature}
        for name, value in scores.items():
            undefined = isinstance(value, Reason)
            record[name] = None if undefined else value
            record[f"{name}_reason"] = value.value if undefined else None
        records.append(record)
    return pd.DataFrame(records)


def test_every_reason_has_one_policy():
    assert set(UNDEFINED_POLICY) == set(Reason)
    assert undefined_policy("a reason from a newer version") is Undefined.LEAVES_FEATURE_OUT
    assert undefined_policy(Reason.BELOW_GINI_THRESHOLD) is Undefined.COUNTS_ZERO  # FADE's gate: the description's
    assert undefined_policy(Reason.NO_ACTIVATING_EXAMPLES) is Undefined.LEAVES_FEATURE_OUT  # a dead feature


def test_the_worked_example_of_the_docs():
    gate, out = Reason.BELOW_GINI_THRESHOLD, Reason.NO_NATURAL_SAMPLES
    a = _table({
        0: dict(clarity=0.8, responsiveness=0.7, purity=0.6, faithfulness=0.5),
        1: dict(clarity=0.4, responsiveness=0.3, purity=0.2, faithfulness=gate),
        2: dict(clarity=0.5, responsiveness=out, purity=out, faithfulness=gate),
    })  # fmt: skip
    b = _table({
        0: dict(clarity=0.9, responsiveness=0.8, purity=0.7, faithfulness=0.6),
        1: dict(clarity=0.6, responsiveness=0.2, purity=0.1, faithfulness=gate),
        2: dict(clarity=0.7, responsiveness=0.6, purity=0.5, faithfulness=0.4),
    })  # fmt: skip
    assert feature_aggregate(a, FADE).tolist()[:2] == pytest.approx([0.65, 0.225])
    assert np.isnan(feature_aggregate(a, FADE)[2])
    assert aggregate_value(a, FADE) == pytest.approx(0.4375)  # a run alone: over the features it keeps
    assert aggregate_value(b, FADE) == pytest.approx((0.75 + 0.225 + 0.55) / 3)
    table = pd.DataFrame([{"variant": "A", "run_id": "A"}, {"variant": "B", "run_id": "B"}])
    ranked = rank_variants(table, features={"A": a, "B": b}, min_features=2).set_index("variant")
    # compared, both on the features both keep: feature 2 is left out for B too
    assert ranked.loc["A", "aggregate_mean"] == pytest.approx(0.4375)
    assert ranked.loc["B", "aggregate_mean"] == pytest.approx(0.4875)
    assert ranked.loc["B", "aggregate_features"] == 2 and ranked.loc["B", "aggregate_defined"] == pytest.approx(2 / 3)


def test_one_lucky_defined_feature_does_not_outrank_a_variant_better_on_every_feature():
    rng = np.random.default_rng(0)
    n = 16
    base = rng.uniform(0.3, 0.6, n)
    better = _table({f: dict(clarity=base[f] + 0.1, responsiveness=base[f] + 0.1, purity=base[f] + 0.1,
                             faithfulness=Reason.BELOW_GINI_THRESHOLD) for f in range(n)})  # fmt: skip
    lucky_rows = {f: dict(clarity=base[f], responsiveness=base[f], purity=base[f],
                          faithfulness=Reason.BELOW_GINI_THRESHOLD) for f in range(n)}  # fmt: skip
    lucky_rows[0]["faithfulness"] = 0.9  # the only feature with a Faithfulness
    lucky = _table(lucky_rows)
    table = pd.DataFrame([{"variant": name, "run_id": name} for name in ("lucky", "better")])
    ranked = rank_variants(table, features={"lucky": lucky, "better": better})
    assert list(ranked["variant"]) == ["better", "lucky"]
    comparison = ranked["vs_above"][1]
    assert comparison.tested and comparison.features == n and comparison.significant
    # Ranked by faithfulness's own defined-feature mean the lucky one leads, with its coverage beside it.
    lucky_summary = summarise_aggregate(pd.Series([0.9] + [np.nan] * (n - 1)), n)
    assert lucky_summary["defined"] == pytest.approx(1 / n) and lucky_summary["mean"] == pytest.approx(0.9)


def test_the_paired_test_pairs_exactly_the_numbers_the_ranking_averages():
    rng = np.random.default_rng(1)
    n = 20
    tables = {}
    for name, shift in (("x", 0.0), ("y", -0.05), ("z", -0.3)):
        rows = {
            f: dict(clarity=float(np.clip(rng.uniform(0.2, 0.9) + shift, 0, 1)), purity=rng.uniform(0, 1))
            for f in range(n)
        }
        rows[3]["purity"] = Reason.NO_RATED_2_SAMPLES  # counts 0
        if name == "y":
            rows[7]["purity"] = Reason.TOO_FEW_ACTIVATING_EXAMPLES  # leaves feature 7 out, for x and z too
        tables[name] = _table(rows)
    table = pd.DataFrame([{"variant": name, "run_id": name} for name in tables])
    weights = {"clarity": 1.0, "purity": 1.0}
    ranked = rank_variants(table, weights=weights, features=tables)
    values = ranking_values(table, "aggregate", tables, weights)
    assert all(7 not in series.index and len(series) == n - 1 for series in values.values())
    for position in range(1, len(ranked)):
        above, below = ranked["run_id"][position - 1], ranked["run_id"][position]
        comparison = ranked["vs_above"][position]
        assert ranked["aggregate_mean"][position] == pytest.approx(values[below].mean())
        assert comparison.features == n - 1
        assert comparison.mean_difference == pytest.approx((values[below] - values[above]).mean())


def test_default_weights_leave_out_a_score_turned_off_everywhere():
    off = _table({f: dict(clarity=0.5, responsiveness=0.5, purity=0.5, faithfulness=Reason.FAITHFULNESS_DISABLED)
                  for f in range(3)})  # fmt: skip
    assert default_weights([off]) == {"clarity": 1.0, "responsiveness": 1.0, "purity": 1.0}
    assert aggregate_value(off, default_weights([off])) == pytest.approx(0.5)
    assert aggregate_value(off, FADE) is None  # asked for explicitly: every feature is left out
    assert default_weights([]) == FADE


def test_what_a_variant_left_out_is_left_out_for_all_but_what_it_did_not_evaluate_is_not():
    kept = pd.Series([0.1, 0.2, 0.3, 0.4], index=[0, 1, 2, 3])
    left_out = pd.Series([0.1, np.nan, 0.3], index=[0, 1, 2])  # evaluated feature 1 and left it out; not 3
    nothing = pd.Series([np.nan] * 4)  # keeps no feature: its aggregate is undefined, it excludes nothing
    assert excluded_features({"a": kept, "b": left_out, "none": nothing}).tolist() == [1]
