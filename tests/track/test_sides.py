"""Input side vs output side (harness.track.sides): Spearman across features per variant, on constructed
per-feature tables with known answers; the manifest puts each score on its side."""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.track.manifest import FADE_KINDS, ScoreColumn, fade_column
from harness.track.sides import MIN_FEATURES, format_sides, side_correlations, side_pairs

COLUMNS = {
    "clarity": fade_column("clarity"),
    "faithfulness": fade_column("faithfulness"),
    "detection": ScoreColumn(name="detection", kind="input"),
    "output-score": ScoreColumn(name="output-score", kind="feature", side="output"),
}


def _table(**columns) -> pd.DataFrame:
    return pd.DataFrame({"feature": range(len(next(iter(columns.values())))), **columns})


def test_fade_puts_faithfulness_alone_on_the_output_side():
    assert [name for name in FADE_KINDS if fade_column(name).side == "output"] == ["faithfulness"]
    assert side_pairs(COLUMNS) == [
        ("clarity", "faithfulness"), ("clarity", "output-score"),
        ("detection", "faithfulness"), ("detection", "output-score"),
    ]  # fmt: skip


def test_known_rank_correlations_and_every_undefined_case_with_its_reason():
    rising = np.linspace(0.1, 0.9, 8)
    agree = _table(clarity=rising, detection=rising[::-1], **{"output-score": rising**3})
    few = _table(clarity=rising, detection=rising, **{"output-score": [0.5, 0.2, 0.9] + [None] * 5})
    flat = _table(clarity=np.full(8, 0.4), detection=rising, **{"output-score": rising})
    found = side_correlations({"a": "agree", "b": "few", "c": "flat"}, {"a": agree, "b": few, "c": flat}, COLUMNS)
    by = {(item.variant, item.input_score, item.output_score): item for item in found}
    # faithfulness has no value in any table: its pairs are not shown at all
    assert {key[2] for key in by} == {"output-score"}
    assert by["agree", "clarity", "output-score"].rho == 1.0  # a monotone map keeps every rank
    assert by["agree", "detection", "output-score"].rho == -1.0
    assert by["agree", "clarity", "output-score"].features == 8
    undefined = by["few", "clarity", "output-score"]
    assert undefined.rho is None and undefined.features == 3
    assert undefined.reason == f"fewer than {MIN_FEATURES} features define both scores (3)"
    assert by["flat", "clarity", "output-score"].reason == "clarity is constant across the 8 features"
    assert by["flat", "detection", "output-score"].rho == 1.0
    text = format_sides(found)
    assert "agree" in text and "+1.00" in text and "-1.00" in text and "constant" in text


def test_no_defined_pair_is_one_line():
    table = _table(clarity=[0.1, 0.2], **{"output-score": [0.3, 0.1]})
    text = format_sides(side_correlations({"a": "only"}, {"a": table}, COLUMNS))
    assert text.count("\n") == 0 and "no variant defines" in text and "output-score" in text


def test_the_output_centric_scorers_declare_their_side():
    from harness.track.manifest import scorer_column

    sides = {
        name: scorer_column(name).side for name in ("output-detection", "output-score", "input-score", "detection")
    }
    assert sides == {
        "output-detection": "output",
        "output-score": "output",
        "input-score": "input",
        "detection": "input",
    }


def test_the_scatter_shows_each_variants_rho_as_the_correlations_hold_it():
    from harness.track.sides import sides_figure

    rising = np.linspace(0.1, 0.9, 8)
    features = {
        "a": _table(clarity=rising, **{"output-score": rising}),
        "b": _table(clarity=rising, **{"output-score": rising[::-1]}),
    }
    found = side_correlations({"a": "up", "b": "down"}, features, COLUMNS)
    figure = sides_figure(found, features, ("clarity", "output-score"))
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["up (rho +1.00, n=8)", "down (rho -1.00, n=8)"]
    assert [len(collection.get_offsets()) for collection in figure.axes[0].collections] == [8, 8]
