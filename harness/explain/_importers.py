"""The import formats: FADE results, Neuronpedia exports, OpenAI neuron-explainer files, plain CSV, JSON records."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pandera.pandas as pa

from harness.errors import EvaluationError
from harness.explain._importing import (
    DESCRIPTION_COLUMN,
    FEATURE_COLUMN,
    Importer,
    RawRow,
    RowProblem,
    is_feature_index,
    is_text,
    is_unit_score,
    json_entries,
    json_records,
    object_column,
)
from harness.files import csv_unsafe
from harness.score_names import FADE_SCORES

_SCORE = object_column(is_unit_score, "a score in [0, 1]", nullable=True)
_OPTIONAL_TEXT = object_column(is_text, "a non-empty text", nullable=True)


def _first_record(path: Path, text: str) -> Any:
    """The first record of a JSON/JSONL file, for format detection; None when there is none."""
    if path.suffix.lower() == ".csv":
        return None
    try:
        for _, record in json_records(text, str(path), []):
            return record
    except EvaluationError:
        return None
    return None


def _not_a_record(line: int, value: Any, problems: list[RowProblem]) -> bool:
    if isinstance(value, dict):
        return False
    problems.append(RowProblem(line, None, f"expected a JSON object, got {type(value).__name__}"))
    return True


class FadeImporter(Importer):
    """FADE's published results: {"<feature index>": {"concept", "clarity", "responsiveness", "purity",
    "faithfulness"}}; the scores are kept as published_* columns."""

    schema = pa.DataFrameSchema(
        {
            "feature": FEATURE_COLUMN,
            "description": DESCRIPTION_COLUMN,
            **{f"published_{name}": _SCORE for name in FADE_SCORES},
        }
    )

    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        if not text.lstrip().startswith("{"):
            raise EvaluationError(f"{where}: a FADE results file is one JSON object keyed by feature index")
        rows = []
        for line, key, value in json_entries(text, where):
            if _not_a_record(line, value, problems):
                continue
            scores = {f"published_{name}": value.get(name) for name in FADE_SCORES}
            rows.append(RawRow(line, {"feature": key, "description": value.get("concept"), **scores}))
        return rows

    @classmethod
    def recognises(cls, path: Path, text: str) -> bool:
        if not text.lstrip().startswith("{"):
            return False
        try:
            entries = json_entries(text, str(path))
            _, key, value = next(entries)
        except (EvaluationError, StopIteration):
            return False
        return is_feature_index(key) and isinstance(value, dict) and "concept" in value


class NeuronpediaImporter(Importer):
    """Neuronpedia explanation exports (JSON array or JSONL) of records with modelId, layer, index,
    description, explanationModelName, typeName."""

    schema = pa.DataFrameSchema(
        {
            "feature": FEATURE_COLUMN,
            "description": DESCRIPTION_COLUMN,
            "model_id": _OPTIONAL_TEXT,
            "layer": _OPTIONAL_TEXT,
            "explanation_model": _OPTIONAL_TEXT,
            "type_name": _OPTIONAL_TEXT,
        }
    )

    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        rows = []
        for line, value in json_records(text, where, problems):
            if _not_a_record(line, value, problems):
                continue
            fields = {
                "feature": value.get("index"),
                "description": value.get("description"),
                "model_id": value.get("modelId"),
                "layer": value.get("layer"),
                "explanation_model": value.get("explanationModelName"),
                "type_name": value.get("typeName"),
            }
            rows.append(RawRow(line, fields))
        return rows

    @classmethod
    def recognises(cls, path: Path, text: str) -> bool:
        record = _first_record(path, text)
        return isinstance(record, dict) and {"index", "description"} <= record.keys()


class NeuronExplainerImporter(Importer):
    """OpenAI neuron-explainer explanation files: one JSON object, a JSON array or JSONL of records
    {"neuron_id": {"layer_index", "neuron_index"}, "scored_explanations": [{"explanation", ...}]}
    (layer_index/neuron_index also accepted at the top level). The first explanation is kept, with its
    `ev_correlation_score` when the file has one."""

    schema = pa.DataFrameSchema(
        {
            "feature": FEATURE_COLUMN,
            "description": DESCRIPTION_COLUMN,
            "layer": object_column(is_feature_index, "a non-negative integer layer index"),
            "explanation_score": object_column(
                lambda value: isinstance(value, int | float) and not isinstance(value, bool),
                "a number",
                nullable=True,
            ),
        }
    )

    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        rows = []
        for line, value in json_records(text, where, problems):
            if _not_a_record(line, value, problems):
                continue
            neuron = value.get("neuron_id") if isinstance(value.get("neuron_id"), dict) else value
            explanations = value.get("scored_explanations")
            if not isinstance(explanations, list) or not explanations or not isinstance(explanations[0], dict):
                problems.append(RowProblem(line, "scored_explanations", "no explanation in scored_explanations"))
                continue
            first = explanations[0]
            simulation = first.get("scored_simulation")
            fields = {
                "feature": neuron.get("neuron_index"),
                "description": first.get("explanation"),
                "layer": neuron.get("layer_index"),
                "explanation_score": simulation.get("ev_correlation_score") if isinstance(simulation, dict) else None,
            }
            rows.append(RawRow(line, fields))
        return rows

    @classmethod
    def recognises(cls, path: Path, text: str) -> bool:
        record = _first_record(path, text)
        return isinstance(record, dict) and "scored_explanations" in record


class CsvImporter(Importer):
    """A CSV file with a header and the columns `feature` and `description` (others are ignored)."""

    schema = pa.DataFrameSchema({"feature": FEATURE_COLUMN, "description": DESCRIPTION_COLUMN})

    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = {"feature", "description"} - set(header)
        if missing:
            raise EvaluationError(
                f"{where}: the CSV header ({', '.join(header) or 'empty'}) lacks the column(s) "
                f"{', '.join(sorted(missing))}; the first line must name 'feature' and 'description'"
            )
        rows = []
        try:
            for record in reader:
                # line_num is the record's last physical line; quoted fields may span several
                start = reader.line_num - sum(str(value).count("\n") for value in record.values())
                if None in record or any(value is None for value in record.values()):
                    problems.append(RowProblem(start, None, f"expected {len(header)} fields as in the header"))
                else:
                    description = csv_unsafe(record["description"])  # as `harness explain -o` had it
                    rows.append(RawRow(start, {"feature": record["feature"], "description": description}))
        except csv.Error as error:
            raise EvaluationError(f"{where}: CSV error at line {reader.line_num}: {error}") from None
        return rows

    @classmethod
    def recognises(cls, path: Path, text: str) -> bool:
        return path.suffix.lower() == ".csv"


class RecordsImporter(Importer):
    """JSON records `[{"feature": 3, "description": "..."}]` (array, single object or JSON Lines; other
    fields are ignored), as `harness explain` writes them."""

    schema = pa.DataFrameSchema({"feature": FEATURE_COLUMN, "description": DESCRIPTION_COLUMN})

    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        return [
            RawRow(line, {"feature": record.get("feature"), "description": record.get("description")})
            for line, record in json_records(text, where, problems)
            if not _not_a_record(line, record, problems)
        ]

    @classmethod
    def recognises(cls, path: Path, text: str) -> bool:
        record = _first_record(path, text)
        return isinstance(record, dict) and {"feature", "description"} <= record.keys()
