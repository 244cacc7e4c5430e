"""The inline SVG plots: known-answer geometry and statistics, and labels that stay text."""

import math
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from leaderboard._plots import (
    box_stats,
    cost_label,
    cost_quality_svg,
    cost_scale,
    distributions_svg,
    nice_ticks,
    pareto_front,
    radar_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '</title><script>alert(1)</script><img src=x onerror="alert(2)"> & "quotes"'


def test_pareto_front_keeps_exactly_the_undominated_points():
    costs = [1.0, 2.0, 3.0, 2.0, 0.5, 0.5]
    qualities = [0.5, 0.7, 0.6, 0.7, 0.2, 0.1]
    # (3, .6) is beaten by (2, .7); (0.5, .1) by (0.5, .2); the two identical (2, .7) points beat neither.
    assert pareto_front(costs, qualities).tolist() == [True, True, False, True, True, False]
    assert pareto_front([1.0], [0.3]).tolist() == [True]


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.42, 0.81, [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        (0.0, 6.12, [0.0, 2.0, 4.0, 6.0, 8.0]),
        (0.0, 1.3, [0.0, 0.5, 1.0, 1.5]),
        (0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]),
    ],
)
def test_nice_ticks_cover_the_range_with_round_steps(low, high, expected):
    assert nice_ticks(low, high) == pytest.approx(expected)


def test_box_stats_ignore_undefined_values():
    stats = box_stats([None, 1.0, 2.0, 3.0, 4.0, float("nan")])
    assert (stats.low, stats.q1, stats.median, stats.q3, stats.high, stats.count) == (1.0, 1.75, 2.5, 3.25, 4.0, 4)
    assert box_stats([None, None]) is None


def test_cost_axis_is_logarithmic_when_costs_span_decades_with_free_variants_at_the_left():
    scale = cost_scale([0.0, 0.02, 6.12])
    assert scale.logarithmic and (scale.low, scale.high) == (-2.0, 1.0)
    assert scale.fraction(0.0) == 0.0
    assert scale.fraction(0.01) == pytest.approx(0.08)
    assert scale.fraction(10.0) == pytest.approx(1.0)
    assert scale.fraction(0.1) == pytest.approx(0.08 + 0.92 / 3)
    assert scale.ticks(has_zero=True) == [(0.0, "free"), (0.01, "$0.01"), (0.1, "$0.1"), (1.0, "$1"), (10.0, "$10")]

    linear = cost_scale([0.0, 0.4, 1.3])
    assert not linear.logarithmic and (linear.low, linear.high) == (0.0, 1.5)
    assert linear.fraction(0.75) == pytest.approx(0.5)


def test_cost_labels_in_dollars_or_tokens():
    assert [cost_label(value, "USD") for value in (0.0, 0.02, 1.5, 1234.0)] == ["$0", "$0.02", "$1.5", "$1,234"]
    assert [cost_label(value, "tokens") for value in (0.0, 950.0, 26200.0, 1.5e6)] == ["0", "950", "26.2k", "1.5M"]
    scale = cost_scale([0.0, 2_000.0, 300_000.0])
    assert scale.ticks(has_zero=True, unit="tokens") == [
        (0.0, "0"),
        (1e3, "1k"),
        (1e4, "10k"),
        (1e5, "100k"),
        (1e6, "1M"),
    ]


def test_a_token_cost_axis_has_no_dollars():
    root = _parse(cost_quality_svg(["a", "b"], [26_200.0, 28_300.0], [0.6, 0.1], "aggregate", "tokens"))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    axis = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "axis-label"]
    assert ticks and not any("$" in tick for tick in ticks) and "30k" in ticks
    assert axis[0] == "cost (LLM tokens: every variant cost $0; lower is better)"
    assert [t.text for t in root.iter(f"{SVG}title")] == [
        "a: 26,200 LLM tokens, aggregate 0.600 (Pareto front)",
        "b: 28,300 LLM tokens, aggregate 0.100",
    ]


def _parse(svg: str) -> ElementTree.Element:
    root = ElementTree.fromstring(svg)  # well-formed, or this raises
    tags = {element.tag.removeprefix(SVG) for element in root.iter()}
    assert not tags & {"script", "img", "foreignObject"}
    assert not any(name.startswith("on") for element in root.iter() for name in element.attrib)
    return root


def test_radar_puts_each_mean_on_its_axis():
    root = _parse(radar_svg(["clarity", "responsiveness", "purity", "faithfulness"], ["a"], [[1.0, 0.5, None, 0.25]]))
    polygon = next(p for p in root.iter(f"{SVG}polygon") if "series" in p.get("class"))
    points = [tuple(map(float, pair.split(","))) for pair in polygon.get("points").split()]
    centre_x, centre_y, radius = 260.0, 170.0, 120.0
    expected = [
        (centre_x, centre_y - radius),
        (centre_x + radius / 2, centre_y),
        (centre_x, centre_y),
        (centre_x - radius / 4, centre_y),
    ]
    assert points == [pytest.approx(point, abs=0.1) for point in expected]
    assert "purity undefined" in polygon.find(f"{SVG}title").text


def test_svg_labels_are_escaped_text():
    names = [HOSTILE, "cheap", "dear"]
    svgs = [
        radar_svg(["clarity", "purity"], names, [[0.5, 0.6], [0.2, 0.3], [0.9, 0.9]]),
        distributions_svg("clarity", names, [box_stats([0.1, 0.5, 0.9]), None, box_stats([0.4])]),
        cost_quality_svg(names, [0.5, 0.0, 2.0], [0.9, 0.1, 0.95], "aggregate"),
    ]
    for svg in svgs:
        root = _parse(svg)
        titles = [title.text for title in root.iter(f"{SVG}title")]
        assert any(title.startswith(HOSTILE) for title in titles)


def test_scatter_marks_and_labels_the_front():
    root = _parse(cost_quality_svg(["a", "b", "c", "d"], [1.0, 2.0, 3.0, 0.5], [0.5, 0.7, 0.6, 0.2], "aggregate"))
    circles = list(root.iter(f"{SVG}circle"))
    assert [c.get("class") for c in circles] == ["point front", "point front", "point", "point front"]
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "point-label"]
    assert labels == ["a", "b", "d"]
    # the staircase visits the front points from cheapest to dearest
    path = next(root.iter(f"{SVG}path")).get("d")
    xs = [float(circles[i].get("cx")) for i in (3, 0, 1)]
    assert path.startswith(f"M{xs[0]:.1f},") and path.count("H") == 2
    assert [float(v) for v in re.findall(r"H([\d.]+)", path)] == pytest.approx(xs[1:])


def test_distribution_rows_follow_the_given_order_and_say_undefined():
    root = _parse(distributions_svg("faithfulness", ["x", "y"], [None, box_stats(np.linspace(0, 1, 5))]))
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "row-label"]
    assert labels == ["x", "y"]
    assert any(t.text == "undefined" for t in root.iter(f"{SVG}text"))
    box = next(g for g in root.iter(f"{SVG}g") if "box" in g.get("class"))
    rect = box.find(f"{SVG}rect")
    # quartiles 0.25..0.75 of a 280 px axis that starts at x = 190
    assert float(rect.get("x")) == pytest.approx(190 + 70, abs=0.1)
    assert float(rect.get("width")) == pytest.approx(140, abs=0.1)
    assert not math.isnan(float(rect.get("y")))
