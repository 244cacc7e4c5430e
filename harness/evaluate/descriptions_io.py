"""Read the descriptions to score: a table the harness saved, or a file written elsewhere.

Outside formats go through the explain stage's importers (FADE's published per-feature JSON
`{"<feature index>": {"concept": ...}}`, CSV with `feature` and `description` columns, Neuronpedia and
neuron-explainer exports); this module adds JSON records `[{"feature": 3, "description": "..."}]`
(array, single object or JSON Lines) and parquet files of a descriptions table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from harness.errors import ConfigError, EvaluationError
from harness.explain import IMPORTERS, Importer, RowProblem, import_descriptions, validate_descriptions
from harness.explain._importing import DESCRIPTION_COLUMN, FEATURE_COLUMN, RawRow, json_records


@IMPORTERS.register("records")
class RecordsImporter(Importer):
    """JSON records with `feature` and `description` fields (other fields are ignored)."""

    schema = pa.DataFrameSchema({"feature": FEATURE_COLUMN, "description": DESCRIPTION_COLUMN})

    def rows(self, text: str, where: str, problems: list[RowProblem]) -> list[RawRow]:
        rows = []
        for line, record in json_records(text, where, problems):
            if not isinstance(record, dict):
                problems.append(RowProblem(line, None, f"expected a JSON object, got {type(record).__name__}"))
                continue
            rows.append(RawRow(line, {"feature": record.get("feature"), "description": record.get("description")}))
        return rows

    @classmethod
    def recognises(cls, path: Path, text: str) -> bool:
        if path.suffix.lower() == ".csv":
            return False
        try:
            first = next((record for _, record in json_records(text, str(path), [])), None)
        except EvaluationError:
            return False
        return isinstance(first, dict) and {"feature", "description"} <= first.keys()


def read_descriptions(path: str | Path, format: str = "auto") -> pd.DataFrame:
    """The descriptions table (columns feature, description, ...) in a file.

    Args:
        path: a parquet descriptions table, or a file in a registered import format.
        format: 'auto' (parquet by suffix, else detected), 'parquet', or an import format name
            ('fade', 'csv', 'records', 'neuronpedia', 'neuron-explainer').

    Raises:
        ConfigError: the file does not exist or its format cannot be told.
        EvaluationError: the file holds no usable description (the message lists the bad rows).
    """
    path = Path(path)
    if format == "parquet" or (format == "auto" and path.suffix.lower() == ".parquet"):
        if not path.is_file():
            raise ConfigError(f"descriptions file {path} does not exist")
        try:
            table = pd.read_parquet(path)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"descriptions file {path} is not a readable parquet table: {error}") from None
        return validate_descriptions(table, str(path))
    table, _ = import_descriptions(path, format)
    return table
