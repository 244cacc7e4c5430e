"""Corpus loading: embedded python-docs, local files through `datasets`, cutting, filtering, errors."""

import json

import pandas as pd
import pytest

from harness.config import CorpusConfig
from harness.corpus import SAMPLE_SCHEMA, corpus_fingerprint, load_corpus, validate_samples
from harness.corpus._python_docs import DOCSTRING_MODULES, paragraphs, python_docs_records
from harness.errors import CorpusError


def test_python_docs_is_deterministic_given_the_seed():
    first = load_corpus(CorpusConfig(num_samples=50, seed=3))
    again = load_corpus(CorpusConfig(num_samples=50, seed=3))
    other = load_corpus(CorpusConfig(num_samples=50, seed=4))
    pd.testing.assert_frame_equal(first, again)
    assert set(first["sample_id"]) != set(other["sample_id"])
    assert len(first) == 50 and first["sample_id"].is_monotonic_increasing
    SAMPLE_SCHEMA.validate(first)


def test_python_docs_draws_on_reference_topics_and_docstrings():
    records = python_docs_records()
    kinds = {source.split(":")[0] for source, _ in records}
    assert kinds == {"pydoc", "docstring"}
    modules = {source.split(":")[1].split(".")[0] for source, _ in records if source.startswith("docstring:")}
    assert modules <= set(DOCSTRING_MODULES) and len(modules) > len(DOCSTRING_MODULES) // 2
    table = load_corpus(CorpusConfig(num_samples=None, shuffle=False))
    assert table["text"].str.len().max() <= 250 and table["text"].str.len().min() >= 20
    assert table["text"].is_unique
    # unshuffled and unlimited: sample ids are the record indices, texts their 250-character cuts
    for sample_id, text in zip(table["sample_id"][:20], table["text"][:20]):
        assert records[sample_id][1][:250] == text


def test_paragraphs_join_short_blocks_until_long_enough():
    blocks = paragraphs("a" * 50 + "\n\n" + "b" * 160 + "\n \n" + "c" * 300 + "\n\n" + "tail")
    assert blocks == ["a" * 50 + "\n\n" + "b" * 160, "c" * 300, "tail"]


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_local_files_load_with_column_cut_and_dedup(tmp_path, suffix):
    rows = pd.DataFrame(
        {
            "body": ["x" * 300, "short", "the same text here", "the same text here", "another fine sample"],
            "label": [1, 2, 3, 4, 5],
        }
    )
    path = tmp_path / f"corpus.{suffix}"
    {"jsonl": lambda: rows.to_json(path, orient="records", lines=True), "csv": lambda: rows.to_csv(path, index=False),
     "parquet": lambda: rows.to_parquet(path)}[suffix]()  # fmt: skip
    table = load_corpus(CorpusConfig(source=str(path), text_column="body", max_chars=100, min_chars=10, shuffle=False))
    assert table["sample_id"].tolist() == [0, 2, 4]
    assert table["text"].tolist() == ["x" * 100, "the same text here", "another fine sample"]
    assert set(table["source"]) == {f"file:corpus.{suffix}"}


def test_text_file_and_sample_count(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"line number {i:03d} of the file" for i in range(30)), encoding="utf-8")
    table = load_corpus(CorpusConfig(source=str(path), num_samples=7, seed=1))
    assert len(table) == 7 and table["text"].str.startswith("line number").all()
    assert table["text"].tolist() == [f"line number {i:03d} of the file" for i in table["sample_id"]]


@pytest.mark.slow
def test_cut_by_tokens_ends_at_a_token_boundary(subject_tokenizer, tmp_path):
    path = tmp_path / "c.jsonl"
    text = "Interpretability researchers compare automated descriptions of neurons."
    path.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    table = load_corpus(CorpusConfig(source=str(path), max_chars=None, max_tokens=4, min_chars=1), subject_tokenizer)
    cut = table["text"][0]
    ids = subject_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert cut == subject_tokenizer.decode(ids[:4])
    assert len(subject_tokenizer(cut, add_special_tokens=False)["input_ids"]) == 4


def test_max_tokens_without_tokenizer_is_a_clear_error():
    with pytest.raises(CorpusError, match="tokenizer"):
        load_corpus(CorpusConfig(max_tokens=10))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(CorpusConfig(source=str(tmp_path / "nothing.jsonl")))


def test_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"content": "some text long enough", "id": 1}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no column 'text'.*'content', 'id'"):
        load_corpus(CorpusConfig(source=str(path)))


def test_non_text_column_is_a_clear_error(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame({"text": [1, 2, 3]}).to_csv(path, index=False)
    with pytest.raises(CorpusError, match="holds int values"):
        load_corpus(CorpusConfig(source=str(path)))


def test_empty_corpus_is_a_clear_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"text": "tiny"}) for _ in range(3)), encoding="utf-8")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(CorpusConfig(source=str(path), min_chars=20))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt"])
def test_an_empty_file_says_so(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"c\.\w+ is empty \(0 bytes\)"):
        load_corpus(CorpusConfig(source=str(path)))


def test_unknown_file_type_is_a_clear_error(tmp_path):
    path = tmp_path / "c.docx"
    path.write_bytes(b"not text")
    with pytest.raises(CorpusError, match="unknown type"):
        load_corpus(CorpusConfig(source=str(path)))


def test_unreachable_hub_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CorpusError, match="not an embedded corpus"):
        load_corpus(CorpusConfig(source="nobody-here/no-such-dataset-xyz"))


def test_schema_rejects_duplicate_ids_and_empty_text():
    with pytest.raises(CorpusError, match="sample_id"):
        validate_samples(pd.DataFrame({"sample_id": [1, 1], "text": ["a", "b"], "source": ["s", "s"]}), "test")
    with pytest.raises(CorpusError, match="text"):
        validate_samples(pd.DataFrame({"sample_id": [1, 2], "text": ["a", ""], "source": ["s", "s"]}), "test")


def test_fingerprint_follows_content():
    table = pd.DataFrame({"sample_id": [0, 1], "text": ["a b", "c"], "source": ["s", "s"]})
    assert corpus_fingerprint(table) == corpus_fingerprint(table.copy())
    assert corpus_fingerprint(table) != corpus_fingerprint(table.assign(text=["a b", "d"]))
    assert corpus_fingerprint(table) != corpus_fingerprint(table.assign(text=["a", " bc"]))
