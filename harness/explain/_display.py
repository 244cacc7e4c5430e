"""How an example's per-token activations are written into a prompt.

`highlight` wraps runs of active tokens in << >> (delphi's style); `values` lists one token per line with
its activation on a 0-10 scale (the OpenAI neuron-explainer's style). Both scale by the feature's largest
token activation, so the same token reads the same in every example of a feature.
"""

from __future__ import annotations

import numpy as np

from harness.activations.types import ActivatingExample
from harness.config import ActivationDisplayConfig

HIGHLIGHT_OPEN, HIGHLIGHT_CLOSE = "<<", ">>"

DISPLAY_INSTRUCTIONS = {
    # closing marker named first, so no "<<...>>" span appears outside the examples themselves
    "highlight": f"In each example, the feature is active on the marked tokens; each marked span is closed by "
    f'"{HIGHLIGHT_CLOSE}" and opened by "{HIGHLIGHT_OPEN}".',
    "values": "Each example is written one token per line between <start> and <end>; after a tab comes the "
    "feature's activation on that token, from 0 (inactive) to 10 (its strongest activation).",
}


def normalise_activations(activations: np.ndarray, scale: float) -> np.ndarray:
    """Integer activations on 0-10: 10 * a / scale, rounded; negatives and a non-positive scale give 0."""
    if scale <= 0:
        return np.zeros(activations.shape, dtype=np.int64)
    return np.clip(np.rint(10.0 * np.asarray(activations, dtype=np.float64) / scale), 0, 10).astype(np.int64)


def _visible(token: str) -> str:
    """Line breaks and tabs written as escapes, so every example stays on its own line(s) of the prompt."""
    return token.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def highlight_tokens(tokens: list[str], active: np.ndarray) -> str:
    """The tokens joined, each run of active tokens wrapped in << >> (leading whitespace left outside)."""
    parts: list[str] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            joined = "".join(run)
            stripped = joined.lstrip()
            parts.append(f"{joined[: len(joined) - len(stripped)]}{HIGHLIGHT_OPEN}{stripped}{HIGHLIGHT_CLOSE}")
            run.clear()

    for token, is_active in zip(tokens, active):
        if is_active:
            run.append(_visible(token))
        else:
            close_run()
            parts.append(_visible(token))
    close_run()
    return "".join(parts)


def render_example(example: ActivatingExample, scale: float, display: ActivationDisplayConfig) -> str:
    """One example as prompt text under the display settings.

    Args:
        example: the (possibly cropped) example.
        scale: the feature's largest token activation; values are shown relative to it.
        display: highlight markers or 0-10 values.
    """
    if display.mode == "highlight":
        active = (np.asarray(example.activations) >= display.highlight_threshold * scale) & (scale > 0)
        return highlight_tokens(example.tokens, active)
    values = normalise_activations(example.activations, scale)
    lines = [f"{_visible(token)}\t{value}" for token, value in zip(example.tokens, values)]
    return "\n".join(["<start>", *lines, "<end>"])
