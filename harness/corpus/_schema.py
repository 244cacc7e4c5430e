"""The sample table every later stage reads: one row per natural text sample."""

from __future__ import annotations

import hashlib

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError

from harness.errors import CorpusError

SAMPLE_SCHEMA = pa.DataFrameSchema(
    {
        "sample_id": pa.Column(int, unique=True, checks=pa.Check.ge(0)),
        "text": pa.Column(str, checks=pa.Check.str_length(min_value=1)),
        "source": pa.Column(str),
    },
    strict=False,
    coerce=True,
    name="sample table",
)


def validate_samples(samples: pd.DataFrame, where: str) -> pd.DataFrame:
    """The table coerced to SAMPLE_SCHEMA; CorpusError naming the broken column otherwise."""
    try:
        return SAMPLE_SCHEMA.validate(samples.reset_index(drop=True))
    except SchemaError as error:
        raise CorpusError(f"corpus {where}: the sample table is invalid: {error}") from None


def corpus_fingerprint(samples: pd.DataFrame) -> str:
    """Content hash of (sample_id, text) rows in order: the corpus part of activation cache keys."""
    digest = hashlib.sha256()
    for sample_id, text in zip(samples["sample_id"].tolist(), samples["text"].tolist()):
        digest.update(f"{sample_id}\x00{text}\x00".encode())
    return digest.hexdigest()
