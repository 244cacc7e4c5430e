"""Read the descriptions to score: a table the harness saved, or a file written elsewhere.

Outside formats go through the explain stage's importers (FADE's published per-feature JSON
`{"<feature index>": {"concept": ...}}`, CSV with `feature` and `description` columns, JSON records
`[{"feature": 3, "description": "..."}]`, Neuronpedia and neuron-explainer exports); parquet files of a
descriptions table are read here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.errors import ConfigError, EvaluationError
from harness.explain import import_descriptions, validate_descriptions


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
