"""The four FADE plots of one feature, as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state).

Same views as the reference: Clarity densities (synthetic vs natural), rated natural samples stacked by
rating over activation, the change in rating shares per steering factor against the baseline, and a
radar of the four scores.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.evaluate.fade._metrics import BASELINE_FACTOR, VALID_RATINGS
from harness.evaluate.scores import FeatureScores

RATING_COLOURS = {0: "#482677", 1: "#1f968b", 2: "#fde725"}  # the reference's palette
RATING_LABELS = {0: "0: absent", 1: "1: vague", 2: "2: present"}
_BINS = 40


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _edges(*arrays: np.ndarray) -> np.ndarray:
    values = np.concatenate([np.asarray(array, dtype=np.float64) for array in arrays] + [np.zeros(1)])
    low, high = float(values.min()), float(values.max())
    return np.linspace(low, high if high > low else low + 1.0, _BINS + 1)


def _score_text(name: str, score: object) -> str:
    value = getattr(score, "value", None)
    return f"{name} = {value:.3f}" if value is not None else f"{name} undefined ({getattr(score, 'reason', '')})"


def _stacked_steps(axes: Any, edges: np.ndarray, layers: np.ndarray, labels: list[str] | None = None) -> None:
    """Per bin, the ratings' layers stacked in the reference's colours (one filled step outline per layer)."""
    bottom = np.zeros(layers.shape[1])
    for index, (rating, layer) in enumerate(zip(VALID_RATINGS, layers)):
        label = labels[index] if labels else None
        axes.stairs(bottom + layer, edges, baseline=bottom, fill=True, color=RATING_COLOURS[rating], label=label)
        bottom = bottom + layer


def clarity_plot(synthetic: np.ndarray, natural: np.ndarray, scores: FeatureScores) -> bytes:
    """Densities of the feature's activation on synthetic (concept) and natural samples."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    edges = _edges(synthetic, natural)
    layers = ((natural, "natural", RATING_COLOURS[0], 0.6), (synthetic, "synthetic", RATING_COLOURS[2], 0.7))
    for values, name, colour, alpha in layers:
        if len(values):
            density = np.histogram(values, bins=edges, density=True)[0]
            axes.stairs(density, edges, fill=True, alpha=alpha, color=colour, label=f"{name} ({len(values)})")
    axes.set_xlabel("activation")
    axes.set_ylabel("density")
    axes.set_title(_score_text("Clarity", scores.clarity))
    axes.legend()
    return _png(figure)


def rating_plot(activations: np.ndarray, ratings: np.ndarray, scores: FeatureScores) -> bytes:
    """Rated natural samples over activation: counts stacked by rating, and each rating's share per bin."""
    figure = Figure(figsize=(8, 5.5))
    counts_axes, share_axes = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = _edges(activations)
    counts = np.stack([np.histogram(activations[ratings == rating], bins=edges)[0] for rating in VALID_RATINGS])
    labels = [f"{RATING_LABELS[rating]} ({int(count.sum())})" for rating, count in zip(VALID_RATINGS, counts)]
    _stacked_steps(counts_axes, edges, counts, labels)
    counts_axes.set_ylabel("samples")
    counts_axes.legend(title="rating", loc="upper right")
    counts_axes.set_title(
        f"{_score_text('Responsiveness', scores.responsiveness)}; {_score_text('Purity', scores.purity)}"
    )
    totals = counts.sum(axis=0)
    _stacked_steps(share_axes, edges, np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0))
    share_axes.set_ylabel("share")
    share_axes.set_xlabel("activation")
    return _png(figure)


def faithfulness_plot(shares_by_factor: Mapping[float, Mapping[int, float]], scores: FeatureScores) -> bytes:
    """Per steering factor, the change of each rating's share against the baseline (factor 0)."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    baseline = shares_by_factor.get(BASELINE_FACTOR, {})
    factors = [factor for factor in sorted(shares_by_factor) if factor != BASELINE_FACTOR]
    positions = np.arange(len(factors))
    width = 0.8 / len(VALID_RATINGS)
    for offset, rating in enumerate(VALID_RATINGS):
        change = [shares_by_factor[factor].get(rating, 0.0) - baseline.get(rating, 0.0) for factor in factors]
        offsets = positions + (offset - 1) * width
        axes.bar(offsets, change, width, color=RATING_COLOURS[rating], label=RATING_LABELS[rating])
    axes.axhline(0, color="black", linewidth=0.8, linestyle="--")
    axes.set_xticks(positions, [f"{factor:g}" for factor in factors])
    axes.set_xlabel("modification factor")
    axes.set_ylabel("share minus baseline share")
    title = _score_text("Faithfulness", scores.faithfulness)
    if scores.faithfulness_factor is not None:
        title += f" at factor {scores.faithfulness_factor:g}"
    axes.set_title(title)
    axes.legend(title="rating")
    return _png(figure)


def radar_plot(scores: FeatureScores, title: str) -> bytes:
    """The four scores as the reference's diamond (each axis 0 at the centre, 1 at the tip; undefined
    scores drawn at 0 and marked n/a). Plain axes with the frame off: a polar projection costs 3x more."""
    names = ("responsiveness", "faithfulness", "clarity", "purity")  # right, top, left, bottom: the reference's
    directions = np.array([(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)])
    values = [getattr(scores, name).value for name in names]
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    for level in (0.25, 0.5, 0.75, 1.0):
        ring = np.vstack([directions, directions[:1]]) * level
        axes.plot(ring[:, 0], ring[:, 1], color="grey", linewidth=0.6)
    shape = directions * np.array([value or 0.0 for value in values])[:, None]
    axes.fill(shape[:, 0], shape[:, 1], color="#3b528b", alpha=0.5, edgecolor="#3b528b", linewidth=2)
    for (x, y), name, value in zip(directions * 1.08, names, values):
        axes.text(x, y, f"{name}\n{'n/a' if value is None else f'{value:.2f}'}", ha="center", va="center", fontsize=9)
    axes.set_xlim(-1.35, 1.35)
    axes.set_ylim(-1.35, 1.35)
    axes.set_aspect("equal")
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    return _png(figure)
