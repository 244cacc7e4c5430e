"""A run's score manifest: which columns of its per-feature table are scores, and what each is.

`harness compare` and the leaderboard read the manifest of each run instead of the registry of the process
that reads it, so a plugin's score reaches both wherever they run, the plugin installed there or not; and a
score is described by what its scorer declared when the run was made (its class attributes, `Scorer.kind`
and `Scorer.convention`). Runs logged before the manifest existed are read through the registry, as then.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.artifacts import SCORE_MANIFEST
from harness.score_names import CLARITY_ABOVE_FLOOR, FADE_SCORES

if TYPE_CHECKING:
    from harness.config import HarnessConfig

# What FADE's scores measure: Clarity, Responsiveness and Purity rate inputs against the description,
# Faithfulness the outputs steered by the feature (docs/fade-deviations.md).
FADE_KINDS: dict[str, Literal["input", "output", "feature"]] = {
    "clarity": "input",
    "responsiveness": "input",
    "purity": "input",
    "faithfulness": "output",
    CLARITY_ABOVE_FLOOR: "input",
}


class ScoreColumn(BaseModel):
    """One score column of a run's per-feature table (with `<name>_reason` beside it)."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # a later harness may add fields

    name: str
    kind: Literal["input", "output", "feature"]  # Scorer.kind; "feature": reads no description
    side: Literal["input", "output"] = "input"  # Scorer.side: where the feature fires, or what it does to the output
    convention: str | None = None  # whose method, in words, when another project's (Scorer.convention)
    distribution: str | None = None  # the installed plugin that computed it; None: the harness


def fade_column(name: str) -> ScoreColumn:
    """A FADE score's column; Faithfulness is the one that reads the outputs."""
    kind = FADE_KINDS[name]
    return ScoreColumn(name=name, kind=kind, side="output" if kind == "output" else "input")


def scorer_column(name: str) -> ScoreColumn:
    """The column of the registered scorer `name`, from its class attributes (imports the scorer)."""
    from harness.evaluate.scorers import SCORERS

    scorer = SCORERS.get(name)
    return ScoreColumn(
        name=name,
        kind=scorer.kind,
        side=scorer.side,
        convention=scorer.convention,
        distribution=SCORERS.distribution(name),
    )


def score_manifest(config: HarnessConfig) -> list[ScoreColumn]:
    """The score columns a run of `config` logs: FADE's four, Clarity above its floor when the floor is on,
    then each enabled scorer's."""
    fade = [*FADE_SCORES, *([CLARITY_ABOVE_FLOOR] if config.fade.clarity_floor.enabled else [])]
    return [fade_column(name) for name in fade] + [scorer_column(name) for name in config.scorers.enabled]


def log_score_manifest(config: HarnessConfig) -> None:
    """Write the run's score manifest (`harness.artifacts.SCORE_MANIFEST`) to the active MLflow run."""
    import mlflow

    mlflow.log_dict({"columns": [column.model_dump() for column in score_manifest(config)]}, SCORE_MANIFEST)


def read_score_manifest(path: Path) -> list[ScoreColumn] | None:
    """The manifest in the file at `path`; None when there is none or it cannot be read (the run is then read
    as one logged before the manifest existed)."""
    if not path.is_file():
        return None
    try:
        return [ScoreColumn.model_validate(item) for item in json.loads(path.read_text(encoding="utf-8"))["columns"]]
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def registered_column(name: str) -> ScoreColumn | None:
    """What a run logged before the manifest says `name` is, by today's registry: FADE's scores and the
    registered scorers; None for any other column."""
    from harness.evaluate.scorers import SCORERS

    if name in FADE_KINDS:
        return fade_column(name)
    return scorer_column(name) if name in SCORERS else None


def run_score_names(manifest: list[ScoreColumn] | None) -> set[str]:
    """The score columns of one run: its manifest's, else FADE's and today's registered scorers'."""
    from harness.evaluate.scorers import SCORERS

    if manifest is not None:
        return {column.name for column in manifest}
    return {*FADE_KINDS, *SCORERS.names()}


def merged_columns(manifests: Iterable[list[ScoreColumn] | None], names: Iterable[str]) -> dict[str, ScoreColumn]:
    """Score name -> its column, for the `names` that are scores: as the first run's manifest that lists it
    says, else (runs logged before manifests) as `registered_column` says."""
    declared: dict[str, ScoreColumn] = {}
    for manifest in manifests:
        for column in manifest or ():
            declared.setdefault(column.name, column)
    found: dict[str, ScoreColumn] = {}
    for name in names:
        known = declared.get(name) or registered_column(name)
        if known is not None:
            found[name] = known
    return found


def description_free(columns: Mapping[str, ScoreColumn]) -> list[str]:
    """The scores that read no description (kind "feature"): the shuffled control cannot move them."""
    return [name for name, column in columns.items() if column.kind == "feature"]
