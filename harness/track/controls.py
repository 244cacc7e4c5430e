"""The controls table: can each score tell a variant from its randomized control?

A control is a variant setting (docs/controls.md): `random-model` (the subject model re-initialised),
`random-sae` (a random SAE firing as often as the trained one) and `shuffled` (the descriptions of another
explainer given to other features). Each control run carries the variant key of the variant it controls for
(`CONTROL_OF_TAG`). Per score, and for the aggregate, the variant is tested against each of its controls:

- random-model, random-sae: the control's features are other features (another model or SAE), so the test is
  **unpaired**: two-sided Mann-Whitney U over the features' values, effect = rank-biserial correlation
  (P(variant > control) − P(variant < control), in [-1, 1]);
- shuffled: the same features with other descriptions, so **paired**: the Wilcoxon signed-rank test of
  harness.track.paired, effect = its matched-pairs rank-biserial correlation. Description-free scores
  (intruder) are not tested against it: no description, nothing to shuffle.

Each score's tests (against each of its controls) are one Holm family: the verdict answers, per score, "does
it separate?", so each score's flag controls its own family-wise error. Verdict: "separates" when the adjusted p < alpha and the
variant scores higher; otherwise "does not separate" (a control scoring significantly higher is said so in
`note`). A score that does not separate the variant from a random-model or random-sae control is flagged
(`flagged_scores`) wherever scores are shown: it cannot tell a model that learnt something from one that
learnt nothing (Heap et al. 2025, arXiv:2501.17727).

Pure: tables in, records out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from harness.evaluate.aggregate import AGGREGATE
from harness.track._text import text_table
from harness.track.paired import ALPHA, MIN_FEATURES, holm, paired_values, signed_rank_test

CONTROL_TAG = "harness.control"  # the control's kind, on a control run
CONTROL_OF_TAG = "harness.control_of"  # the variant key of the variant it controls for
VARIANT_KEY_COLUMN = "tag:harness.variant_key"
RANDOMIZED = ("random-model", "random-sae")
SEPARATES, DOES_NOT_SEPARATE, NO_TEST = "separates", "does not separate", "no test"


class ControlTest(BaseModel):
    """One score of one variant against one of its controls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion: str = Field(description="'aggregate' or a score name")
    control: str = Field(description="the control's kind: random-model, random-sae or shuffled")
    variant: str = Field(description="run name of the variant controlled for (untrusted text)")
    run_id: str
    control_variant: str = Field(description="run name of the control (untrusted text)")
    control_run_id: str
    test: str = Field(description="'mann-whitney' (unpaired) or 'wilcoxon' (paired)")
    variant_features: int = Field(ge=0, description="features with a value in the variant (paired: the pairs)")
    control_features: int = Field(ge=0, description="features with a value in the control (paired: the pairs)")
    variant_mean: float | None = None
    control_mean: float | None = None
    effect: float | None = Field(None, ge=-1, le=1, description="rank-biserial correlation, > 0: variant higher")
    p_value: float | None = Field(None, ge=0, le=1)
    p_adjusted: float | None = Field(None, ge=0, le=1, description="Holm over the tests of this criterion")
    verdict: str = Field(description="'separates', 'does not separate' or 'no test'")
    note: str | None = Field(None, description="why there is no test, or that the control scored higher")


def mann_whitney(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Two-sided Mann-Whitney U p-value and rank-biserial correlation (> 0: `first` tends higher)."""
    from scipy.stats import mannwhitneyu

    if np.ptp(np.concatenate([first, second])) == 0:
        return 1.0, 0.0  # every value the same: nothing separates them
    result = mannwhitneyu(first, second, alternative="two-sided")
    effect = 2 * float(result.statistic) / (len(first) * len(second)) - 1
    return float(min(max(result.pvalue, 0.0), 1.0)), float(min(max(effect, -1.0), 1.0))


def control_pairs(table: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    """(control kind, control run id, run id of the variant it controls for or None when not compared)."""
    kinds = f"tag:{CONTROL_TAG}"
    if kinds not in table.columns or VARIANT_KEY_COLUMN not in table.columns:
        return []
    by_key = {
        key: str(run_id) for key, run_id in zip(table[VARIANT_KEY_COLUMN], table["run_id"]) if isinstance(key, str)
    }
    pairs = []
    for _, row in table.iterrows():
        kind = row.get(kinds)
        if isinstance(kind, str) and kind:
            pairs.append((kind, str(row["run_id"]), by_key.get(row.get(f"tag:{CONTROL_OF_TAG}"))))
    return pairs


def control_tests(
    table: pd.DataFrame,
    values: Mapping[str, Mapping[str, pd.Series | None]],
    *,
    description_free: Sequence[str] = (),
    alpha: float = ALPHA,
    min_features: int = MIN_FEATURES,
) -> list[ControlTest]:
    """Every control of the table against the variant it controls for, under every criterion of `values`.

    Args:
        table: the compared runs (`variant`, `run_id`, and the `tag:` columns of `variants_table`).
        values: criterion ('aggregate' or a score) -> run id -> its per-feature values (index = feature; NaN
            where undefined): what the rankings compare (harness.track.compare.ranking_values).
        description_free: scores that read no description (not tested against `shuffled`).
        alpha, min_features: level of the Holm-adjusted p-values; fewest features a test needs on each side.
    """
    names = {str(run_id): str(name) for run_id, name in zip(table["run_id"], table["variant"])}
    raw: list[ControlTest] = []
    for kind, control_run, variant_run in control_pairs(table):
        for criterion, by_run in values.items():
            if kind == "shuffled" and criterion in description_free:
                continue
            base = {"criterion": criterion, "control": kind, "control_variant": names[control_run],
                    "control_run_id": control_run, "test": "wilcoxon" if kind not in RANDOMIZED else "mann-whitney"}  # fmt: skip
            if variant_run is None:
                raw.append(ControlTest(**base, variant="", run_id="", variant_features=0, control_features=0,
                                       verdict=NO_TEST, note="the variant it controls for is not among the runs compared"))  # fmt: skip
                continue
            base |= {"variant": names[variant_run], "run_id": variant_run}
            raw.append(_test(base, by_run.get(variant_run), by_run.get(control_run), kind in RANDOMIZED, min_features))
    adjusted: list[float | None] = [None] * len(raw)
    for criterion in dict.fromkeys(item.criterion for item in raw):  # one Holm family per score: its controls
        family = [index for index, item in enumerate(raw) if item.criterion == criterion]
        for index, p_value in zip(family, holm([raw[index].p_value for index in family])):
            adjusted[index] = p_value
    return [_verdict(item, p, alpha) for item, p in zip(raw, adjusted)]


def _test(base: dict, variant: pd.Series | None, control: pd.Series | None, unpaired: bool, min_features: int):
    if variant is None or control is None:
        return ControlTest(**base, variant_features=0, control_features=0, verdict=NO_TEST,
                           note=f"no per-feature {base['criterion']} values in one of the two runs")  # fmt: skip
    if unpaired:
        first = variant.to_numpy(dtype=float)
        second = control.to_numpy(dtype=float)
        first, second = first[np.isfinite(first)], second[np.isfinite(second)]
    else:
        first, second = paired_values(variant, control)
    counts = {"variant_features": len(first), "control_features": len(second)}
    means = {"variant_mean": float(first.mean()) if len(first) else None,
             "control_mean": float(second.mean()) if len(second) else None}  # fmt: skip
    if min(len(first), len(second)) < min_features:
        return ControlTest(**base, **counts, **means, verdict=NO_TEST,
                           note=f"fewer than {min_features} features with a value on one side")  # fmt: skip
    p_value, effect = mann_whitney(first, second) if unpaired else signed_rank_test(first - second)
    return ControlTest(**base, **counts, **means, effect=effect, p_value=p_value, verdict=NO_TEST)


def _verdict(item: ControlTest, p_adjusted: float | None, alpha: float) -> ControlTest:
    if p_adjusted is None:
        return item
    higher = (item.effect or 0) > 0
    separates = p_adjusted < alpha and higher
    note = "the control scores significantly higher" if p_adjusted < alpha and not higher else item.note
    return item.model_copy(
        update={"p_adjusted": p_adjusted, "verdict": SEPARATES if separates else DOES_NOT_SEPARATE, "note": note}
    )


def flagged_scores(tests: Sequence[ControlTest]) -> dict[str, str]:
    """Score -> why it is flagged: it did not separate a variant from its random-model or random-sae control."""
    flags: dict[str, str] = {}
    for item in tests:
        if item.control in RANDOMIZED and item.verdict == DOES_NOT_SEPARATE and item.criterion not in flags:
            flags[item.criterion] = (
                f"does not separate {item.variant} from its {item.control} control "
                f"(Holm-adjusted p = {_p(item.p_adjusted)})"
            )
    return flags


def _p(value: float | None) -> str:
    return "-" if value is None else ("<0.001" if value < 0.001 else f"{value:.3f}")


def format_controls(tests: Sequence[ControlTest], alpha: float = ALPHA) -> str:
    """The controls table as text: per criterion and control, the means, effect, adjusted p and verdict."""
    if not tests:
        return ""
    header = ["score", "control", "variant", "means (variant vs control)", "n", "effect r", "p (Holm)", "verdict"]
    rows = []
    order = {AGGREGATE: 0}
    for item in sorted(tests, key=lambda t: (order.get(t.criterion, 1), t.criterion, t.control)):
        means = "-" if item.variant_mean is None or item.control_mean is None else (
            f"{item.variant_mean:.3f} vs {item.control_mean:.3f}")  # fmt: skip
        verdict = item.verdict + (f" ({item.note})" if item.note else "")
        rows.append([item.criterion, f"{item.control} ({item.test})", item.variant, means,
                     f"{item.variant_features}/{item.control_features}",
                     "-" if item.effect is None else f"{item.effect:+.2f}", _p(item.p_adjusted), verdict])  # fmt: skip
    lines = text_table(header, rows)
    lines.append(
        f"(each score of a variant vs its controls: random-model/random-sae by Mann-Whitney U over the features "
        f"(other features: unpaired), shuffled by the paired Wilcoxon test; Holm over each score's tests, alpha {alpha:g}; "
        f"effect r = rank-biserial correlation, > 0 when the variant scores higher; n = features variant/control)"
    )
    return "\n".join(lines)
