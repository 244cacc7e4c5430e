"""Reading descriptions written elsewhere: the shared machinery of every import format.

Each format turns a file into numbered raw rows; a pandera schema checks them; bad rows are reported by
line (a report plus a warning) and dropped, good rows kept. A file with no good row is an error.
"""

from __future__ import annotations

import json
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pandera.pandas as pa

from harness.errors import ConfigError, EvaluationError, HarnessWarning
from harness.explain._table import Description, descriptions_table
from harness.files import identity_hash
from harness.registry import IMPORTERS

_REPORTED_PROBLEMS = 10


@dataclass(frozen=True)
class RawRow:
    """One record of a source file: where it starts and its fields, named as in the descriptions table."""

    line: int
    fields: dict[str, Any]


@dataclass(frozen=True)
class RowProblem:
    """Why one row of a source file was not imported."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class ImportReport:
    """What an import read, kept, left out (`filtered`, on request) and rejected (`problems`)."""

    path: str
    format: str
    rows_read: int = 0
    rows_kept: int = 0
    rows_filtered: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def rows_rejected(self) -> int:
        return self.rows_read - self.rows_kept - self.rows_filtered

    def summary(self) -> str:
        text = (
            f"{self.path} ({self.format}): kept {self.rows_kept} of {self.rows_read} rows"
            + (f", {self.rows_filtered} filtered out" if self.rows_filtered else "")
            + (f", {self.rows_rejected} rejected" if self.rows_rejected else "")
        )
        shown = "".join(f"\n  {problem}" for problem in self.problems[:_REPORTED_PROBLEMS])
        more = len(self.problems) - _REPORTED_PROBLEMS
        return text + shown + (f"\n  ... and {more} more (see the report's problems)" if more > 0 else "")


class DescriptionImportWarning(HarnessWarning):
    """Some rows of an imported descriptions file were rejected (the report lists them)."""


# -- element checks shared by the formats' schemas --------------------------------------------------------


def is_feature_index(value: object) -> bool:
    """A non-negative integer, or a string of digits (Neuronpedia writes indices as strings)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.strip().isdigit()


def is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def is_unit_score(value: object) -> bool:
    """A number in [0, 1] (a FADE score); missing values are allowed by the column, not here."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def object_column(check: Any, error: str, nullable: bool = False) -> pa.Column:
    return pa.Column(object, pa.Check(check, element_wise=True, error=error), nullable=nullable)


FEATURE_COLUMN = object_column(is_feature_index, "a non-negative integer feature index")
DESCRIPTION_COLUMN = object_column(is_text, "a non-empty description text")


# -- JSON with line numbers -------------------------------------------------------------------------------


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _skip_space(text: str, offset: int) -> int:
    while offset < len(text) and text[offset] in " \t\r\n":
        offset += 1
    return offset


def json_entries(text: str, where: str) -> Iterator[tuple[int, str | None, Any]]:
    """(line, key, value) of each entry of a top-level JSON array (key None) or object.

    The file is parsed in one piece, so a syntax error anywhere is a file-level error naming its line.
    """
    decoder = json.JSONDecoder()
    start = _skip_space(text, 0)
    if start == len(text) or text[start] not in "[{":
        raise EvaluationError(f"{where}: expected a JSON array or object at line {_line_of(text, start)}")
    closer = "]" if text[start] == "[" else "}"
    offset = _skip_space(text, start + 1)
    line, counted_to = _line_of(text, offset), offset  # counted incrementally: big exports stay linear
    try:
        while offset < len(text) and text[offset] != closer:
            line += text.count("\n", counted_to, offset)
            counted_to, key = offset, None
            if closer == "}":
                key, offset = decoder.raw_decode(text, offset)
                if not isinstance(key, str):
                    raise json.JSONDecodeError("expected a string key", text, counted_to)
                offset = _skip_space(text, offset)
                if text[offset : offset + 1] != ":":
                    raise json.JSONDecodeError("expected ':'", text, offset)
                offset = _skip_space(text, offset + 1)
            value, offset = decoder.raw_decode(text, offset)
            yield line, key, value
            offset = _skip_space(text, offset)
            if text[offset : offset + 1] == ",":
                offset = _skip_space(text, offset + 1)
            elif text[offset : offset + 1] != closer:
                raise json.JSONDecodeError(f"expected ',' or '{closer}'", text, offset)
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{where}: invalid JSON at line {error.lineno}: {error.msg}") from None
    if offset >= len(text) or text[_skip_space(text, offset + 1) :].strip():
        raise EvaluationError(f"{where}: invalid JSON: the top-level value is not closed or is followed by more text")


def jsonl_entries(text: str, problems: list[RowProblem]) -> Iterator[tuple[int, Any]]:
    """(line, value) of each non-blank line of a JSON Lines file; an unreadable line becomes a problem."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(RowProblem(number, None, f"invalid JSON: {error.msg}"))


def json_records(text: str, where: str, problems: list[RowProblem]) -> Iterator[tuple[int, Any]]:
    """Records of a JSON array, a single JSON object, or JSON Lines, with their line numbers."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        for line, _, value in json_entries(text, where):
            yield line, value
        return
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        yield from jsonl_entries(text, problems)
        return
    yield _line_of(text, len(text) - len(stripped)), whole


# -- importers --------------------------------------------------------------------------------------------


class Importer(ABC):
    """One file format of outside descriptions. Register subclasses in harness.registry.IMPORTERS."""

    schema: ClassVar[pa.DataFrameSchema]  # of the raw rows; checks every column that `rows` fills

    @abstractmethod
    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        """The file's records as raw rows; records too malformed to become rows go to `problems`."""

    @classmethod
    @abstractmethod
    def recognises(cls, path: Path, text: str) -> bool:
        """Whether a file looks like this format (for format='auto')."""


def _normalise(column: str, value: Any) -> Any:
    if column == "feature":
        return int(value)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _checked_rows(frame: pd.DataFrame, schema: pa.DataFrameSchema, report: ImportReport) -> pd.DataFrame:
    """The rows that pass `schema`; the others become problems with their line numbers."""
    try:
        return schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as error:
        cases = error.failure_cases
        row_cases = cases[cases["index"].notna()]
        if len(row_cases) < len(cases):
            raise EvaluationError(
                f"{report.path}: the file's columns do not match the {report.format} format: "
                + "; ".join(f"{case.column}: {case.check}" for case in cases[cases["index"].isna()].itertuples())
            ) from None
        bad = sorted({int(index) for index in row_cases["index"]})
        for case in row_cases.itertuples():
            message = "missing" if case.check == "not_nullable" else f"{case.failure_case!r} is not {case.check}"
            report.problems.append(RowProblem(int(frame.at[int(case.index), "line"]), str(case.column), message))
        return frame.drop(index=bad)


def import_descriptions(
    path: str | Path, format: str = "auto", select: dict[str, str] | None = None
) -> tuple[pd.DataFrame, ImportReport]:
    """A descriptions table from an outside file, and the report of what was kept and rejected.

    Rejected rows raise a DescriptionImportWarning that lists them; a file without one good row raises
    EvaluationError. A feature that appears twice keeps its first row (the later ones are problems).

    Args:
        path: the file.
        format: a registered format ('fade', 'neuronpedia', 'neuron-explainer', 'csv') or 'auto'.
        select: keep only rows whose column equals the value, e.g. {"layer": "6-res-jb",
            "explanation_model": "gpt-4o-mini"} for a Neuronpedia export of several layers or explainers.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"descriptions file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"descriptions file {path} cannot be read as UTF-8 text: {error}") from None
    if IMPORTERS.chosen(format) is None:
        found = [name for name in IMPORTERS if IMPORTERS.get(name).recognises(path, text)]
        if len(found) != 1:
            raise ConfigError(
                f"cannot tell the format of {path} ({'could be ' + ', '.join(found) if found else 'none matches'}); "
                f"name it: one of {', '.join(IMPORTERS.names())}"
            )
        format = found[0]
    importer = IMPORTERS.get(format)()
    report = ImportReport(path=str(path), format=format)
    raw = importer.rows(text, str(path), report.problems)
    report.rows_read = len(raw) + len(report.problems)
    columns = list(importer.schema.columns)
    frame = pd.DataFrame(
        {
            "line": pd.Series([row.line for row in raw], dtype="int64"),
            **{name: pd.Series([row.fields.get(name) for row in raw], dtype=object) for name in columns},
        }
    )
    for column, value in (select or {}).items():
        if column not in columns:
            raise ConfigError(f"cannot select on {column!r}: {format} files have the columns {', '.join(columns)}")
        keep = frame[column].map(lambda cell: str(cell) == str(value))
        report.rows_filtered += int((~keep).sum())
        frame = frame[keep]
    frame = _checked_rows(frame, importer.schema, report)
    first_line: dict[int, int] = {}
    kept = []
    for record in frame.to_dict("records"):
        row = {column: _normalise(column, record[column]) for column in columns}
        if row["feature"] in first_line:
            report.problems.append(
                RowProblem(
                    record["line"],
                    "feature",
                    f"feature {row['feature']} already given at line "
                    f"{first_line[row['feature']]}; narrow the rows with `select`",
                )
            )
            continue
        first_line[row["feature"]] = record["line"]
        kept.append(row)
    report.problems.sort(key=lambda problem: problem.line)
    report.rows_kept = len(kept)
    if not kept:
        raise EvaluationError(f"no usable descriptions in {report.summary()}")
    if report.problems:
        warnings.warn(report.summary(), DescriptionImportWarning, stacklevel=2)
    extras = [column for column in columns if column not in ("feature", "description")]
    identity = identity_hash({"file": text, "format": format, "select": select or {}})[:16]
    table = descriptions_table(
        [Description(feature=row["feature"], description=row["description"]) for row in kept],
        explainer=f"import:{format}",
        settings_hash=identity,
        extra_columns={column: [row[column] for row in kept] for column in extras},
    )
    return table, report
