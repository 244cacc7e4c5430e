"""docs/architecture.md's "A scorer", followed as written: its example scorer and registration code are read
from the doc, so the doc cannot drift from what works."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
from scorer_records import TOPICS, shuffled_descriptions, true_descriptions

from harness.config import ScorersConfig, parse_config
from harness.errors import ConfigError
from harness.evaluate.scorers import run_scorers
from harness.registry import SCORERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
FEATURES = list(range(len(TOPICS)))


def _python_blocks() -> list[str]:
    """The doc's python code blocks, dedented (one sits inside a list item)."""
    text = DOC.read_text(encoding="utf-8")
    return [textwrap.dedent(block) for block in re.findall(r"^ *```python\n(.*?)^ *```", text, re.S | re.M)]


def _block(marker: str) -> str:
    (found,) = [block for block in _python_blocks() if marker in block]
    return found


@pytest.fixture
def documented_scorer(tmp_path, monkeypatch):
    """The doc's my_scorers.py written to an importable folder and registered by the doc's own lines; the
    registry and sys.modules are restored afterwards, so no other test sees the scorer."""
    module = _block("# my_scorers.py")
    (tmp_path / "my_scorers.py").write_text(module, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(SCORERS, "_targets", dict(SCORERS._targets))
    monkeypatch.setattr(SCORERS, "_names_by_target", dict(SCORERS._names_by_target))
    exec(_block("SCORERS.add("), {})
    yield
    sys.modules.pop("my_scorers", None)


def test_the_documented_scorer_is_registered_and_named_in_a_config(documented_scorer):
    assert "overlap" in SCORERS.names()
    config = parse_config({"scorers": {"enabled": ["overlap"]}})  # parse_config runs check_names
    assert config.scorers.enabled == ["overlap"]
    assert SCORERS.name_of(SCORERS.get("overlap")) == "overlap"


def test_a_config_naming_it_fails_check_names_without_the_registration():
    with pytest.raises(ConfigError, match=r"scorers.enabled\[0\]: unknown scorer 'overlap'"):
        parse_config({"scorers": {"enabled": ["overlap"]}})


def test_the_documented_scorer_runs_through_run_scorers_and_separates_true_from_shuffled(
    documented_scorer, planted_records
):
    config = ScorersConfig(enabled=["overlap"])
    described = {**true_descriptions(FEATURES[:-1]), FEATURES[-1]: None}
    table = run_scorers(planted_records, described, config, None, progress=False).set_index("feature")
    assert list(table.columns) == ["overlap", "overlap_reason", "overlap_examples"]
    assert table.loc[FEATURES[-1], "overlap_reason"] == "no_description"
    scored = table.loc[FEATURES[:-1]]
    assert scored["overlap_reason"].isna().all() and (scored["overlap_examples"] == 20).all()
    shuffled = run_scorers(planted_records, shuffled_descriptions(FEATURES), config, None, progress=False)
    true = run_scorers(planted_records, true_descriptions(FEATURES), config, None, progress=False)
    assert (true["overlap"] > 0.9).all() and (true["overlap"] > shuffled["overlap"]).all()


def test_registry_add_refuses_a_taken_name_or_a_target_without_an_attribute(monkeypatch):
    monkeypatch.setattr(SCORERS, "_targets", dict(SCORERS._targets))
    with pytest.raises(ValueError, match="scorer 'embedding' is already registered"):
        SCORERS.add("embedding", "my_scorers:OverlapScorer")
    with pytest.raises(ValueError, match="'package.module:attribute'"):
        SCORERS.add("overlap", "my_scorers.OverlapScorer")
    assert "overlap" not in SCORERS
