"""Inline SVG plots of the leaderboard, drawn in Python (no JS, no CDN): radar, distributions, cost vs quality,
agreement between scorers.

Geometry and statistics are pure functions of arrays; the SVG writers escape every label and style through
CSS classes (the page's stylesheet colours them, so no inline style is needed under the CSP).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

import numpy as np

from harness.track.agreement import RankCorrelation, ScorerAgreement

SERIES_COLOURS = 10  # CSS classes s0..s9
LABEL_CHARS = 28
AGREEMENT_WIDTH = 800.0  # the page shows it at most this wide (CSS), so at scale 1


def pareto_front(costs: Sequence[float], qualities: Sequence[float]) -> np.ndarray:
    """Mask of the points no other point dominates (cost no higher and quality no lower, one strictly)."""
    cost, quality = np.asarray(costs, dtype=float), np.asarray(qualities, dtype=float)
    no_worse = (cost[None, :] <= cost[:, None]) & (quality[None, :] >= quality[:, None])
    better = (cost[None, :] < cost[:, None]) | (quality[None, :] > quality[:, None])
    return ~(no_worse & better).any(axis=1)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not high > low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(power * m for m in (1, 2, 2.5, 5, 10) if power * m >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [first + i * step for i in range(int(math.ceil((high - first) / step - 1e-9)) + 1)]
    return [round(tick, 12) for tick in ticks]


@dataclass(frozen=True)
class BoxStats:
    low: float
    q1: float
    median: float
    q3: float
    high: float
    count: int


def box_stats(values: Sequence[float]) -> BoxStats | None:
    """Min, quartiles, max of the defined values; None when there are none."""
    defined = np.asarray([value for value in values if value is not None], dtype=float)
    defined = defined[np.isfinite(defined)]
    if defined.size == 0:
        return None
    low, q1, median, q3, high = np.percentile(defined, [0, 25, 50, 75, 100])
    return BoxStats(float(low), float(q1), float(median), float(q3), float(high), int(defined.size))


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>'
    )


def radar_svg(scores: Sequence[str], names: Sequence[str], means: Sequence[Sequence[float | None]]) -> str:
    """One polygon of score means (0..1 on each axis) per variant; an undefined mean sits at the centre.

    Args:
        scores: axis names, clockwise from the top.
        names: variant names, one per polygon (series colour = position).
        means: per variant, its mean for each score (None when undefined).
    """
    width, height, radius = 520.0, 340.0, 120.0
    centre, middle = width / 2, height / 2

    def point(axis: int, value: float) -> tuple[float, float]:
        angle = -math.pi / 2 + 2 * math.pi * axis / len(scores)
        return centre + radius * value * math.cos(angle), middle + radius * value * math.sin(angle)

    body = []
    for level in (0.25, 0.5, 0.75, 1.0):
        ring = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(axis, level) for axis in range(len(scores))))
        body.append(f'<polygon class="gridline" points="{ring}"/>')
    for axis, score in enumerate(scores):
        x, y = point(axis, 1.0)
        lx, ly = point(axis, 1.12)
        anchor = "middle" if abs(lx - centre) < 1 else ("start" if lx > centre else "end")
        body.append(f'<line class="gridline" x1="{centre}" y1="{middle}" x2="{x:.1f}" y2="{y:.1f}"/>')
        body.append(
            f'<text class="axis-label" x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="{anchor}">{escape(score)}</text>'
        )
    for level in (0.5, 1.0):
        x, y = point(0, level)
        body.append(f'<text class="tick" x="{x + 4:.1f}" y="{y + 10:.1f}">{level:g}</text>')
    for index, (name, values) in enumerate(zip(names, means)):
        corners = [point(axis, value or 0.0) for axis, value in enumerate(values)]
        shown = ", ".join(
            f"{score} {'undefined' if value is None else f'{value:.3f}'}" for score, value in zip(scores, values)
        )
        body.append(
            f'<polygon class="series s{index % SERIES_COLOURS}" '
            f'points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in corners)}">'
            f"<title>{escape(name)}: {escape(shown)}</title></polygon>"
        )
    return _svg(width, height, "radar of mean scores per variant", body)


def distributions_svg(score: str, names: Sequence[str], stats: Sequence[BoxStats | None]) -> str:
    """Horizontal box plots (min, quartiles, median, max on 0..1) of one score, one row per variant."""
    label_width, plot_width, row, top = 190.0, 280.0, 16.0, 26.0
    height = top + row * len(names) + 24

    def x(value: float) -> float:
        return label_width + plot_width * min(max(value, 0.0), 1.0)

    body = [f'<text class="plot-title" x="{label_width}" y="14">{escape(score)}</text>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(
            f'<line class="gridline" x1="{x(tick):.1f}" y1="{top - 4}" x2="{x(tick):.1f}" y2="{height - 20:.1f}"/>'
        )
        body.append(f'<text class="tick" x="{x(tick):.1f}" y="{height - 6:.1f}" text-anchor="middle">{tick:g}</text>')
    for index, (name, box) in enumerate(zip(names, stats)):
        middle = top + row * index + row / 2
        body.append(
            f'<text class="row-label" x="{label_width - 8}" y="{middle + 4:.1f}" text-anchor="end">'
            f"{escape(_short(name))}<title>{escape(name)}</title></text>"
        )
        if box is None:
            body.append(f'<text class="tick" x="{x(0) + 4:.1f}" y="{middle + 4:.1f}">undefined</text>')
            continue
        summary = (
            f"{name}: median {box.median:.3f}, quartiles {box.q1:.3f}–{box.q3:.3f}, "
            f"range {box.low:.3f}–{box.high:.3f}, {box.count} features"
        )
        body.append(
            f'<g class="box s{index % SERIES_COLOURS}"><title>{escape(summary)}</title>'
            f'<line x1="{x(box.low):.1f}" y1="{middle:.1f}" x2="{x(box.high):.1f}" y2="{middle:.1f}"/>'
            f'<rect x="{x(box.q1):.1f}" y="{middle - 5:.1f}" width="{max(x(box.q3) - x(box.q1), 1):.1f}" height="10"/>'
            f'<line class="median" x1="{x(box.median):.1f}" y1="{middle - 6:.1f}" x2="{x(box.median):.1f}" '
            f'y2="{middle + 6:.1f}"/></g>'
        )
    return _svg(label_width + plot_width + 16, height, f"distribution of {score} per variant", body)


CostUnit = Literal["USD", "tokens"]
_COST_AXIS: dict[str, str] = {"USD": "USD", "tokens": "LLM tokens: every variant cost $0"}


def _cost_text(value: float, unit: CostUnit) -> str:
    return f"cost ${value:.4g}" if unit == "USD" else f"{value:,.0f} LLM tokens"


@dataclass(frozen=True)
class CostScale:
    """Where a cost sits along the x axis (0..1) and the ticks to draw; logarithmic when costs span decades."""

    logarithmic: bool
    low: float
    high: float
    zero_gap: float  # share of the axis kept at the left for free (zero-cost) variants on a log axis

    def fraction(self, cost: float) -> float:
        if not self.logarithmic:
            return (cost - self.low) / ((self.high - self.low) or 1)
        if cost <= 0:
            return 0.0
        return self.zero_gap + (1 - self.zero_gap) * (math.log10(cost) - self.low) / ((self.high - self.low) or 1)

    def ticks(self, has_zero: bool, unit: CostUnit = "USD") -> list[tuple[float, str]]:
        if not self.logarithmic:
            return [(tick, cost_label(tick, unit)) for tick in nice_ticks(self.low, self.high)]
        decades = [(10.0**power, cost_label(10.0**power, unit)) for power in range(int(self.low), int(self.high) + 1)]
        return ([(0.0, "free" if unit == "USD" else "0")] if has_zero else []) + decades


def cost_label(value: float, unit: CostUnit) -> str:
    """A tick label: dollars, or a token count in thousands / millions."""
    if unit == "USD":
        return f"${_number(value)}"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def cost_scale(costs: Sequence[float], decades: float = 1.5) -> CostScale:
    """Linear from 0, unless the positive costs span at least `decades` powers of ten: then log10 by decade."""
    cost = np.asarray(costs, dtype=float)
    positive = cost[cost > 0]
    if positive.size >= 2 and math.log10(positive.max() / positive.min()) >= decades:
        low, high = math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max()))
        return CostScale(True, float(low), float(max(high, low + 1)), 0.08 if (cost <= 0).any() else 0.0)
    ticks = nice_ticks(0.0, float(cost.max()) if cost.size and cost.max() > 0 else 1.0)
    return CostScale(False, ticks[0], ticks[-1], 0.0)


def cost_quality_svg(
    names: Sequence[str],
    costs: Sequence[float],
    qualities: Sequence[float],
    quality_label: str,
    unit: CostUnit = "USD",
) -> str:
    """Scatter of cost against quality with the Pareto front as a staircase; front points are labelled.

    `unit` "tokens" plots LLM tokens spent instead of dollars: the cost a researcher can still compare when
    every variant cost $0 (local models, or backends litellm has no price for).
    """
    width, height = 680.0, 380.0
    left, right, top, bottom = 56.0, 190.0, 16.0, 44.0
    cost, quality = np.asarray(costs, dtype=float), np.asarray(qualities, dtype=float)
    front = pareto_front(cost, quality)
    quality_low, quality_high = float(quality.min()), float(quality.max())
    if quality_high - quality_low < 1e-9:
        quality_low, quality_high = quality_low - 0.05, quality_high + 0.05
    scale = cost_scale(cost)
    y_ticks = nice_ticks(quality_low, quality_high)
    y_low, y_high = y_ticks[0], y_ticks[-1]

    def x(value: float) -> float:
        return left + (width - left - right) * scale.fraction(value)

    def y(value: float) -> float:
        return height - bottom - (height - top - bottom) * (value - y_low) / ((y_high - y_low) or 1)

    body = []
    for tick, label in scale.ticks(bool((cost <= 0).any()), unit):
        body.append(f'<line class="gridline" x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{height - bottom}"/>')
        body.append(
            f'<text class="tick" x="{x(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{label}</text>'
        )
    for tick in y_ticks:
        body.append(f'<line class="gridline" x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}"/>')
        body.append(f'<text class="tick" x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    body.append(
        f'<text class="axis-label" x="{(left + width - right) / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"cost ({_COST_AXIS[unit]}{', log scale' if scale.logarithmic else ''}; lower is better)</text>"
        f'<text class="axis-label" transform="translate(14 {(top + height - bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(quality_label)} (higher is better)</text>'
    )
    order = np.flatnonzero(front)[np.argsort(cost[front], kind="stable")]
    if order.size:
        steps = [f"M{x(cost[order[0]]):.1f},{y(quality[order[0]]):.1f}"]
        for index in order[1:]:
            steps.append(f"H{x(cost[index]):.1f}V{y(quality[index]):.1f}")
        body.append(f'<path class="front" d="{"".join(steps)}"/>')
    for index, name in enumerate(names):
        kind = "point front" if front[index] else "point"
        body.append(
            f'<circle class="{kind}" cx="{x(cost[index]):.1f}" cy="{y(quality[index]):.1f}" r="5">'
            f"<title>{escape(name)}: {_cost_text(cost[index], unit)}, {escape(quality_label)} {quality[index]:.3f}"
            f"{' (Pareto front)' if front[index] else ''}</title></circle>"
        )
        if front[index]:
            body.append(
                f'<text class="point-label" x="{x(cost[index]) + 8:.1f}" y="{y(quality[index]) + 4:.1f}">'
                f"{escape(_short(name))}</text>"
            )
    return _svg(width, height, f"cost against {quality_label} with the Pareto front", body)


def _correlation_fill(rho: float) -> str:
    """Class and opacity of a cell on the diverging scale: blue agrees (rho > 0), orange disagrees."""
    return f'class="corr {"pos" if rho >= 0 else "neg"}" fill-opacity="{0.85 * abs(rho):.2f}"'


def _correlation_title(pair: RankCorrelation) -> str:
    if pair.rho is None:
        return f"{pair.first} vs {pair.second}: undefined, {pair.reason}"
    return f"{pair.first} vs {pair.second}: Spearman's rho {pair.rho:.3f} over {pair.variants} variants"


def rank_correlation_svg(agreement: ScorerAgreement) -> str:
    """Heatmap of the lower triangle, one cell per pair of scores: rho and n, or '—' with the reason as tooltip."""
    rows, columns = agreement.scores[1:], agreement.scores[:-1]
    cell_width, cell_height, top = 96.0, 42.0, 8.0
    grid_bottom = top + cell_height * len(rows)
    # At least AGREEMENT_WIDTH wide with the grid centred, so a few scores are drawn at the size of many.
    grid_width = 110.0 + cell_width * len(columns) + 16
    width = max(grid_width, AGREEMENT_WIDTH)
    grid_left = 110.0 + (width - grid_width) / 2
    legend_top = grid_bottom + 34
    height = legend_top + 34

    body = []
    for row, second in enumerate(rows):
        y = top + cell_height * row
        body.append(
            f'<text class="row-label" x="{grid_left - 8}" y="{y + cell_height / 2 + 4:.1f}" text-anchor="end">'
            f"{escape(_short(second))}<title>{escape(second)}</title></text>"
        )
        for column, first in enumerate(columns[: row + 1]):
            pair, x = agreement.pair(first, second), grid_left + cell_width * column
            strong = pair.rho is not None and abs(pair.rho) > 0.6
            fill = 'class="corr undefined"' if pair.rho is None else _correlation_fill(pair.rho)
            value = "—" if pair.rho is None else f"{pair.rho:.2f}"
            body.append(
                f'<g class="corr-cell{" strong" if strong else ""}" data-pair="{escape(first)}|{escape(second)}">'
                f"<title>{escape(_correlation_title(pair))}</title>"
                f'<rect {fill} x="{x:.1f}" y="{y:.1f}" width="{cell_width}" height="{cell_height}"/>'
                f'<text class="corr-value" x="{x + cell_width / 2:.1f}" y="{y + 18:.1f}" text-anchor="middle">{value}</text>'
                f'<text class="corr-count" x="{x + cell_width / 2:.1f}" y="{y + 33:.1f}" text-anchor="middle">'
                f"n = {pair.variants}</text></g>"
            )
    for column, first in enumerate(columns):
        body.append(
            f'<text class="row-label" x="{grid_left + cell_width * (column + 0.5):.1f}" y="{grid_bottom + 16:.1f}" '
            f'text-anchor="middle">{escape(_short(first))}<title>{escape(first)}</title></text>'
        )
    steps, legend_width = 20, 320.0
    body.append('<g class="corr-legend">')
    for step in range(steps):
        rho = -1 + (step + 0.5) * 2 / steps
        body.append(
            f'<rect {_correlation_fill(rho)} x="{grid_left + legend_width * step / steps:.1f}" y="{legend_top}" '
            f'width="{legend_width / steps + 0.5:.1f}" height="10"/>'
        )
    body.append("</g>")
    for tick in (-1.0, -0.5, 0.0, 0.5, 1.0):
        body.append(
            f'<text class="tick" x="{grid_left + legend_width * (tick + 1) / 2:.1f}" y="{legend_top + 24}" '
            f'text-anchor="middle">{tick:g}</text>'
        )
    body.append(f'<text class="tick" x="{grid_left - 8}" y="{legend_top + 9}" text-anchor="end">Spearman’s ρ</text>')
    return _svg(width, height, f"Spearman rank correlation of scorers across {agreement.variants} variants", body)


@dataclass(frozen=True)
class SideSeries:
    """One variant's features on an input-side vs output-side scatter, with its rank correlation."""

    variant: str
    input_values: Sequence[float]
    output_values: Sequence[float]
    rho: float | None
    features: int


def sides_scatter_svg(input_score: str, output_score: str, series: Sequence[SideSeries]) -> str:
    """Each feature of each variant as a dot at (input-side score, output-side score), a colour per variant;
    the legend gives each variant's Spearman rho across its features."""
    width, height = 520.0, 360.0
    left, right, top, bottom = 52.0, 20.0, 16.0, 44.0
    legend_height = 16.0 * len(series)
    xs = np.asarray([value for item in series for value in item.input_values], dtype=float)
    ys = np.asarray([value for item in series for value in item.output_values], dtype=float)
    x_ticks = nice_ticks(float(min(xs.min(initial=0.0), 0.0)), float(max(xs.max(initial=1.0), 1.0)))
    y_ticks = nice_ticks(float(min(ys.min(initial=0.0), 0.0)), float(max(ys.max(initial=1.0), 1.0)))
    plot_bottom = height - bottom

    def x(value: float) -> float:
        return left + (width - left - right) * (value - x_ticks[0]) / ((x_ticks[-1] - x_ticks[0]) or 1)

    def y(value: float) -> float:
        return plot_bottom - (plot_bottom - top) * (value - y_ticks[0]) / ((y_ticks[-1] - y_ticks[0]) or 1)

    body = []
    for tick in x_ticks:
        body.append(f'<line class="gridline" x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{plot_bottom}"/>')
        body.append(
            f'<text class="tick" x="{x(tick):.1f}" y="{plot_bottom + 16}" text-anchor="middle">{_number(tick)}</text>'
        )
    for tick in y_ticks:
        body.append(f'<line class="gridline" x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}"/>')
        body.append(f'<text class="tick" x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    body.append(
        f'<text class="axis-label" x="{(left + width - right) / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"{escape(input_score)} (input side)</text>"
        f'<text class="axis-label" transform="translate(14 {(top + plot_bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{escape(output_score)} (output side)</text>'
    )
    for index, item in enumerate(series):
        colour = f"s{index % SERIES_COLOURS}"
        for value_x, value_y in zip(item.input_values, item.output_values):
            body.append(
                f'<circle class="dot {colour}" cx="{x(value_x):.1f}" cy="{y(value_y):.1f}" r="3.5">'
                f"<title>{escape(item.variant)}: {escape(input_score)} {value_x:.3f}, {escape(output_score)} "
                f"{value_y:.3f}</title></circle>"
            )
        rho = "—" if item.rho is None else f"{item.rho:+.2f}"
        legend_y = height + 14 + 16 * index
        body.append(
            f'<circle class="dot {colour}" cx="{left + 4}" cy="{legend_y - 4}" r="4"/>'
            f'<text class="tick" x="{left + 14}" y="{legend_y}">{escape(_short(item.variant))}: rho {rho}, '
            f"n={item.features}</text>"
        )
    return _svg(width, height + legend_height + 8, f"{input_score} vs {output_score} per feature", body)
