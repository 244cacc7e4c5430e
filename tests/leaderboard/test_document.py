"""The `leaderboard.json` schema: what it accepts, what it rejects, and that its docs list every field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.track.controls import ControlTest
from harness.track.paired import PairedComparison
from leaderboard import LeaderboardDocument, VariantEntry
from leaderboard._document import PairedTest, Rank, ScoreSummary, VariantSettings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "leaderboard.md"


def _entry(**changes) -> dict:
    entry = {
        "rank": 1,
        "tied": False,
        "ranks": {"aggregate": {"rank": 1, "tied": False}},
        "variant": "v",
        "run_id": "abc",
        "experiment": "e",
        "settings": {"explainer": "llm"},
        "scores": {"clarity": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "defined": 1.0}},
        "aggregate": 0.5,
        "page": "variants/abc/index.html",
    }
    entry.update(changes)
    return entry


def _document(**changes) -> dict:
    document = {
        "schema_version": 2,
        "title": "t",
        "generated_at": "2025-01-01T00:00:00Z",
        "experiments": ["e"],
        "rank_by": "aggregate",
        "weights": {"clarity": 1.0},
        "scores": ["clarity"],
        "variants": [_entry()],
    }
    document.update(changes)
    return document


def test_a_valid_document_round_trips():
    document = LeaderboardDocument.model_validate(_document())
    assert LeaderboardDocument.model_validate_json(document.model_dump_json()) == document
    assert document.variants[0].scores["clarity"].median is None  # absent = undefined


@pytest.mark.parametrize(
    ("document", "where"),
    [
        (_document(schema_version=1), "schema_version"),
        (_document(surprise=True), "surprise"),
        (_document(variants=[_entry(rank=0)]), "rank"),
        (_document(variants=[_entry(scores={"clarity": {"defined": 1.5}})]), "defined"),
        (_document(variants=[_entry(settings={"model": "x"})]), "model"),
        (_document(variants=[{k: v for k, v in _entry().items() if k != "run_id"}]), "run_id"),
    ],
)
def test_invalid_documents_are_rejected_naming_the_field(document, where):
    with pytest.raises(ValidationError, match=where):
        LeaderboardDocument.model_validate(document)


def test_the_docs_page_lists_every_field():
    text = DOCS.read_text()
    documented = set(re.findall(r"`([a-z_]+)`", text))
    for model in (
        LeaderboardDocument, VariantEntry, ScoreSummary, Rank, VariantSettings, PairedTest, PairedComparison, ControlTest
    ):  # fmt: skip
        missing = set(model.model_fields) - documented
        assert not missing, f"docs/leaderboard.md does not mention {model.__name__} field(s) {sorted(missing)}"
