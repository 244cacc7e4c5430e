"""Rank statistics shared by the agreement between scorers (across variants) and the input/output sides
(across features): pure functions of arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n; tied values share the mean of the ranks they span (as Spearman's rho needs)."""
    return pd.Series(values).rank(method="average").to_numpy(dtype=float)


def spearman(
    first: np.ndarray, second: np.ndarray, names: tuple[str, str], minimum: int, unit: str
) -> tuple[float | None, int, str | None]:
    """Spearman's rho of two value arrays (scores `names`) where both are finite (pairwise complete), with that
    count; rho None with the reason when fewer than `minimum` `unit` define both, or either is constant there."""
    both = np.isfinite(first) & np.isfinite(second)
    count = int(both.sum())
    if count < minimum:
        return None, count, f"fewer than {minimum} {unit} define both scores ({count})"
    first_ranks, second_ranks = average_ranks(first[both]), average_ranks(second[both])
    constant = [name for name, ranks in zip(names, (first_ranks, second_ranks)) if np.ptp(ranks) == 0]
    if constant:
        verb = "is" if len(constant) == 1 else "are"
        return None, count, f"{' and '.join(constant)} {verb} constant across the {count} {unit}"
    rho = float(np.corrcoef(first_ranks, second_ranks)[0, 1])
    return min(max(rho, -1.0), 1.0), count, None
