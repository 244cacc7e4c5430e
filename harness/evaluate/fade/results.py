"""Per-feature FADE results on disk, so an interrupted evaluation resumes where it stopped.

Layout under the output folder:

    features/<feature>/result.json          the FeatureResult, written last: its presence means "done"
    features/<feature>/<table>.csv          synthetic samples, rated natural samples, rated continuations
    features/<feature>/<plot>.png           clarity, ratings, faithfulness, radar (the first `tracking.plot_features`
                                            features of the descriptions table only)
    scores.csv, summary.json                every feature of the last run, written at its end

Every file is written to a temporary name and moved into place, so a killed run leaves either the old
file or the new one. A result is reused only when its key (description, settings, model, site, corpus)
matches the run's and none of its LLM calls failed; otherwise the feature is computed again and its files
replaced. A failed feature's result is written (its scores say `llm_failed`, `llm_error` says why) so
the run's tables show it, but it never stands for the feature's result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import Field

from harness.errors import EvaluationError
from harness.evaluate.fade._clarity_floor import ClarityFloor
from harness.evaluate.scores import FeatureScores, _Record, summarise
from harness.files import csv_safe, write_atomic
from harness.score_names import FADE_SCORES

FEATURES_FOLDER = "features"
RESULT_FILE = "result.json"
SCORES_FILE = "scores.csv"
SUMMARY_FILE = "summary.json"
# The clarity floor's columns in scores.csv (null when fade.clarity_floor is off): its mean, Clarity above
# it, that difference in floor spreads, and whether Clarity beats the floor (docs/clarity-floor.md).
FLOOR_COLUMNS = ("clarity_floor", "clarity_above_floor", "clarity_floor_z", "clarity_beats_floor")


def factor_label(factor: float) -> str:
    """A steering factor as a JSON key and file label: -50, 0, 0.5, 10."""
    return f"{float(factor):g}"


class FeatureResult(_Record):
    """What FADE found for one (feature, description), with the counts and calls behind it.

    `p2_by_factor` and `factor_counts` are keyed by `factor_label`; `steering_reference` is the SAE
    steering scale (the latent's max |activation| on the corpus), None for neuron sites or when
    faithfulness was not computed; `files` are the tables and plots, relative to the feature's folder.
    `llm_failures` counts the LLM calls that failed for good and `llm_error` is the first one's message: such
    a result is a failure (`failed`), its scores that needed those calls undefined with Reason.LLM_FAILED.
    """

    feature: Annotated[int, Field(ge=0)]
    description: str
    key: str
    scores: FeatureScores
    p2_by_factor: dict[str, float] = Field(default_factory=dict)
    factor_counts: dict[str, dict[str, Annotated[int, Field(ge=0)]]] = Field(default_factory=dict)
    steering_reference: float | None = None
    llm_requests: Annotated[int, Field(ge=0)] = 0
    llm_failures: Annotated[int, Field(ge=0)] = 0
    llm_error: str | None = None
    generate_calls: Annotated[int, Field(ge=0)] = 0
    clarity_floor: ClarityFloor | None = None  # None unless fade.clarity_floor.enabled
    files: list[str] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether LLM calls of this feature failed: its result stands for nothing and is computed again."""
        return self.llm_failures > 0


class ResultStore:
    """The per-feature results of one output folder.

    Args:
        root: the output folder (created on the first write).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, feature: int) -> Path:
        return self.root / FEATURES_FOLDER / str(feature)

    def load(self, feature: int, key: str) -> FeatureResult | None:
        """The stored result of `feature` if it was computed with `key` and no LLM call of it failed, else None."""
        path = self.folder(feature) / RESULT_FILE
        if not path.is_file():
            return None
        try:
            result = FeatureResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, EvaluationError) as error:
            raise EvaluationError(
                f"stored FADE result {path} is unreadable ({error}); delete it to compute feature {feature} again"
            ) from None
        return result if result.key == key and not result.failed else None

    def save(
        self, result: FeatureResult, tables: Mapping[str, pd.DataFrame], plots: Mapping[str, bytes]
    ) -> FeatureResult:
        """Write the tables and plots, then the result that lists them (the last write marks the feature done)."""
        folder = self.folder(result.feature)
        (folder / RESULT_FILE).unlink(missing_ok=True)  # an older result must not vouch for the new files
        files = {f"{name}.csv": table.to_csv(index=False).encode("utf-8") for name, table in tables.items()}
        files |= {f"{name}.png": image for name, image in plots.items()}
        if folder.is_dir():
            for stale in folder.iterdir():
                if stale.is_file() and stale.name not in files:
                    stale.unlink()
        for name, data in files.items():
            write_atomic(folder / name, data)
        result = result.model_copy(update={"files": sorted(files)})
        write_atomic(folder / RESULT_FILE, json.dumps(result.to_dict(), indent=2).encode("utf-8"))
        return result

    def table(self, feature: int, name: str) -> pd.DataFrame:
        """A stored table of a feature (e.g. 'natural_ratings'), as written by `save`."""
        path = self.folder(feature) / f"{name}.csv"
        if not path.is_file():
            raise EvaluationError(f"feature {feature} has no table {name!r} in {self.folder(feature)}")
        return pd.read_csv(path, keep_default_na=False, na_values=[""])

    def write_run(
        self, results: Iterable[FeatureResult], skipped: Mapping[int, str]
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Write scores.csv (one row per feature) and summary.json (mean/median with intervals per score)."""
        results = list(results)
        table = scores_table(results)
        summary = {
            "features": len(results),
            "skipped": {str(feature): reason for feature, reason in skipped.items()},
            "llm_requests": sum(result.llm_requests for result in results),
            "llm_failed_features": [result.feature for result in results if result.failed],
            "scores": {name: summarise(getattr(result.scores, name) for result in results) for name in FADE_SCORES},
        }
        floors = [result.clarity_floor for result in results if result.clarity_floor is not None]
        if floors:
            judged = [floor.beats for floor in floors if floor.beats is not None]
            summary["clarity_floor"] = {
                "clarity_above_floor": summarise(floor.above for floor in floors),
                "features_judged": len(judged),
                "features_beating_floor": sum(judged),
            }
        # Descriptions are untrusted text: one opening with = or @ is no formula in a spreadsheet.
        write_atomic(self.root / SCORES_FILE, table.map(csv_safe).to_csv(index=False).encode("utf-8"))
        write_atomic(self.root / SUMMARY_FILE, json.dumps(summary, indent=2).encode("utf-8"))
        return table, summary


def scores_table(results: Iterable[FeatureResult]) -> pd.DataFrame:
    """One row per feature: the four scores, their reasons when undefined, the faithfulness factor, calls."""
    rows = []
    for result in results:
        row: dict[str, Any] = {"feature": result.feature, "description": result.description}
        for name in FADE_SCORES:
            row[name] = getattr(result.scores, name).value
        row["faithfulness_factor"] = result.scores.faithfulness_factor
        for name in FADE_SCORES:
            row[f"{name}_reason"] = getattr(result.scores, name).reason
        row["llm_requests"] = result.llm_requests
        row["llm_failures"] = result.llm_failures
        row["llm_error"] = result.llm_error
        floor = result.clarity_floor
        for column, value in zip(
            FLOOR_COLUMNS, (floor.mean, floor.above, floor.z, floor.beats) if floor else (None,) * 4
        ):
            row[column] = value
        rows.append(row)
    reasons = [f"{name}_reason" for name in FADE_SCORES]
    columns = ["feature", "description", *FADE_SCORES, "faithfulness_factor", *reasons, "llm_requests", *FLOOR_COLUMNS]
    columns += ["llm_failures", "llm_error"]
    return pd.DataFrame(rows, columns=columns)
