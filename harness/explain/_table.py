"""The descriptions table every explainer and importer produces, and what later stages read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from harness.errors import EvaluationError
from harness.score_names import Reason

DISPLAY_MAX_CHARS = 200


@dataclass(frozen=True)
class Description:
    """One feature's description with what it cost; `description` is None only when `error` says why."""

    feature: int
    description: str | None
    example_ids: tuple[int, ...] = ()
    prompt_hash: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


def llm_failure(error: object) -> str:
    """The `error` of a feature left without a description because its explainer calls failed for good (not
    because of its data): Reason.LLM_FAILED, then the error."""
    return f"{Reason.LLM_FAILED}: {error}"


def is_llm_failure(error: object) -> bool:
    """Whether a descriptions table's `error` says the explainer's LLM calls failed (see llm_failure)."""
    return isinstance(error, str) and error.startswith(f"{Reason.LLM_FAILED}: ")


def _is_id_list(value: object) -> bool:
    """A list of integer sample ids (an array after a parquet round trip)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and (value.size == 0 or np.issubdtype(value.dtype, np.integer))
    return isinstance(value, list | tuple) and all(
        isinstance(item, int | np.integer) and not isinstance(item, bool) for item in value
    )


DESCRIPTIONS_SCHEMA = pa.DataFrameSchema(
    {
        "feature": pa.Column("int64", pa.Check.ge(0), unique=True),
        "description": pa.Column(str, nullable=True),
        "explainer": pa.Column(str),
        "settings_hash": pa.Column(str),
        "prompt_hash": pa.Column(str, nullable=True),
        "example_ids": pa.Column(object, pa.Check(_is_id_list, element_wise=True, error="a list of sample ids")),
        "prompt_tokens": pa.Column("int64", pa.Check.ge(0)),
        "completion_tokens": pa.Column("int64", pa.Check.ge(0)),
        "cost_usd": pa.Column("float64", pa.Check.ge(0)),
        "error": pa.Column(str, nullable=True),
    },
    checks=pa.Check(
        lambda table: table["description"].notna() | table["error"].notna(),
        error="a row without a description must say why in 'error'",
    ),
    strict=False,  # importers keep their source's extra fields (published scores, layer, ...)
    name="descriptions",
)


def validate_descriptions(table: pd.DataFrame, source: str = "descriptions table") -> pd.DataFrame:
    """The table checked against DESCRIPTIONS_SCHEMA; EvaluationError lists every problem otherwise."""
    try:
        return DESCRIPTIONS_SCHEMA.validate(table, lazy=True)
    except pa.errors.SchemaErrors as error:
        cases = error.failure_cases[["column", "check", "index", "failure_case"]].head(20).to_string(index=False)
        raise EvaluationError(f"{source} does not match the descriptions schema:\n{cases}") from None
    except pa.errors.SchemaError as error:
        raise EvaluationError(f"{source} does not match the descriptions schema: {error}") from None


def descriptions_table(
    descriptions: Sequence[Description],
    explainer: str,
    settings_hash: str,
    extra_columns: dict[str, Sequence[object]] | None = None,
) -> pd.DataFrame:
    """The validated table of `descriptions`, one row each, sorted by feature.

    Args:
        descriptions: one per feature.
        explainer: the explainer's (or importer's) name, the same on every row.
        settings_hash: identity of the settings that produced the descriptions.
        extra_columns: more columns aligned with `descriptions` (e.g. an import's published scores).
    """
    table = pd.DataFrame(
        {
            "feature": pd.Series([d.feature for d in descriptions], dtype="int64"),
            "description": pd.Series([d.description for d in descriptions], dtype=object),
            "explainer": explainer,
            "settings_hash": settings_hash,
            "prompt_hash": pd.Series([d.prompt_hash for d in descriptions], dtype=object),
            "example_ids": pd.Series([list(d.example_ids) for d in descriptions], dtype=object),
            "prompt_tokens": pd.Series([d.prompt_tokens for d in descriptions], dtype="int64"),
            "completion_tokens": pd.Series([d.completion_tokens for d in descriptions], dtype="int64"),
            "cost_usd": pd.Series([d.cost_usd for d in descriptions], dtype="float64"),
            "error": pd.Series([d.error for d in descriptions], dtype=object),
        }
    )
    for name, values in (extra_columns or {}).items():
        table[name] = list(values)
    return validate_descriptions(table.sort_values("feature", kind="stable").reset_index(drop=True))


def descriptions_from_table(table: pd.DataFrame) -> list[Description]:
    """The rows of a descriptions table as Description objects (missing values as None)."""

    def optional(value: object) -> object:
        return None if value is None or (isinstance(value, float) and pd.isna(value)) else value

    return [
        Description(
            feature=int(row.feature),
            description=optional(row.description),
            example_ids=tuple(int(item) for item in row.example_ids),
            prompt_hash=optional(row.prompt_hash),
            prompt_tokens=int(row.prompt_tokens),
            completion_tokens=int(row.completion_tokens),
            cost_usd=float(row.cost_usd),
            error=optional(row.error),
        )
        for row in validate_descriptions(table).itertuples(index=False)
    ]


def truncate_for_display(text: str | None, max_chars: int = DISPLAY_MAX_CHARS) -> str:
    """A description cut for tables and logs (the stored text stays whole); None shows as ''."""
    if text is None:
        return ""
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"
