"""Corpus stage: natural text samples as a validated table (sample_id, text, source)."""

from harness.corpus._load import EMBEDDED_CORPORA, load_corpus
from harness.corpus._schema import SAMPLE_SCHEMA, corpus_fingerprint, validate_samples

__all__ = ["EMBEDDED_CORPORA", "SAMPLE_SCHEMA", "corpus_fingerprint", "load_corpus", "validate_samples"]
