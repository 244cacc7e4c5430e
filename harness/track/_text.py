"""Plain-text tables for the terminal (`harness compare`, the end of `harness run`)."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The header and rows as lines, each column as wide as its widest cell, two spaces apart."""
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(cell) for cell in column) for column in zip(*cells)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
