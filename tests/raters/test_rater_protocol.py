"""The Rater protocol without loading a model: the LLM judge's adapter, what build_rater and check_rater do
for an LLM and for the embedding rater, and what a registered rater's identity holds."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import harness
from harness.config import EmbeddingRaterConfig, identity_payload, parse_config
from harness.errors import ConfigError, EvaluationError, LLMError
from harness.llm import LLMClient, UsageLedger
from harness.raters import (
    Capability,
    EmbeddingRater,
    LLMRater,
    as_rater,
    build_rater,
    check_rater,
    rater_label,
    rater_settings,
    registered_kind,
)

EMBEDDING = {"rater": {"model": "embedding/all-minilm-l6-v2"}, "generator": {"model": "local/smollm2-135m"}}


def test_an_llm_model_string_is_an_llm_rater_made_per_caller_with_the_callers_ledger(tmp_path):
    fade = parse_config({}).fade
    ledger = UsageLedger(tmp_path / "ledger.jsonl", "fade")
    rater = build_rater(fade, tmp_path, [], progress=False, ledger=ledger)
    other = build_rater(fade, tmp_path, [], progress=False)
    try:
        assert registered_kind(fade) is None and isinstance(rater, LLMRater)
        assert [rater.supports(capability) for capability in Capability] == [True, False, False, False]
        assert isinstance(rater.chat, LLMClient) and rater.chat.config == fade.rater
        assert rater.chat.ledger is ledger and other.chat.ledger is None and other.chat is not rater.chat
        assert rater.label == "local/smollm2-135m"
        with pytest.raises(
            EvaluationError, match=r"'local/smollm2-135m' cannot be asked 'rates' \(it supports \['prompts'\]\)"
        ):
            rater.rate("anything", ["a text"])
    finally:
        rater.close()
        other.close()


def test_an_llm_client_passed_where_a_rater_goes_is_taken_as_an_llm_rater(tmp_path):
    client = LLMClient(parse_config({}).fade.rater, tmp_path, progress=False)
    rater = as_rater(client)
    assert rater.chat is client and rater.supports(Capability.PROMPTS) and as_rater(rater) is rater
    client.close()


def test_each_kind_of_rater_runs_its_own_pre_flight_check(tmp_path):
    check_rater(parse_config({}).fade, tmp_path)  # the LLM rater: a model string litellm knows, a cache that opens
    with pytest.raises(LLMError, match="is not a model string litellm understands"):
        check_rater(parse_config({"fade": {"rater": {"model": "nosuchprovider/x"}}}).fade, tmp_path)
    embedding = parse_config({"fade": EMBEDDING}).fade
    assert registered_kind(embedding) is EmbeddingRater
    check_rater(embedding, tmp_path)  # the embedded encoder is installed
    missing = parse_config({"fade": {**EMBEDDING, "rater": {"model": f"embedding/{tmp_path / 'none'}"}}}).fade
    with pytest.raises(ConfigError, match=r"fade.rater.model '.*none' is neither an embedded encoder"):
        check_rater(missing, tmp_path)


def test_the_embedding_raters_identity_is_its_encoder_and_section_not_the_rest_of_fade():
    def identity(**fade):
        return EmbeddingRater.identity(parse_config({"fade": {**EMBEDDING, **fade}}).fade)

    assert identity() == identity(num_samples=50, seed=3)  # variants differing elsewhere share one rater
    assert identity() != identity(embedding_rater={"yes_quantile": 0.6})
    fade = parse_config({"fade": EMBEDDING}).fade
    held = identity_payload(fade)  # what the run identity holds of the rater
    assert EmbeddingRater.identity(fade) == {
        "model": held["rater"]["model"],
        "embedding_rater": held["embedding_rater"],
    }


def test_the_embedding_rater_declares_its_section_as_its_settings_and_reads_them_like_any_rater():
    fade = parse_config({"fade": {**EMBEDDING, "embedding_rater": {"seed": 7}}}).fade
    assert EmbeddingRater.settings_model is EmbeddingRaterConfig and LLMRater.settings_model is None
    assert rater_settings(fade) == fade.embedding_rater and rater_settings(fade).seed == 7
    assert rater_settings(parse_config({}).fade) is None  # an LLM's settings are fade.rater itself
    with pytest.raises(ConfigError, match=r"rater_settings names a rater whose settings are fade.embedding_rater"):
        parse_config({"fade": {**EMBEDDING, "rater_settings": {"embedding": {"seed": 7}}}})


def test_the_label_of_a_registered_rater_is_its_kinds_and_of_an_llm_its_model_string():
    embedding = parse_config({"fade": EMBEDDING}).fade
    assert rater_label(embedding) == "embedding/all-minilm-l6-v2 (embedding proxy for an LLM judge)"
    assert rater_label(parse_config({}).fade) == "local/smollm2-135m"


def test_no_caller_outside_the_llm_and_rater_packages_asks_which_class_a_rater_is():
    """Capabilities, not classes (docs/architecture.md, "A rater"): no isinstance on a concrete rater or client."""
    root = Path(harness.__file__).parent
    concrete = {"LLMClient", "LLMRater", "EmbeddingRater"}
    found = []
    for path in root.rglob("*.py"):
        if path.relative_to(root).parts[0] in ("llm", "raters"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                names = {getattr(part, "id", getattr(part, "attr", None)) for part in ast.walk(node.args[1])}
                if names & concrete:
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found == []
