"""Load natural text samples from the embedded corpus, a local file or the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.config import CorpusConfig
from harness.corpus._schema import validate_samples
from harness.errors import CorpusError
from harness.registry import EMBEDDED_CORPORA

# `datasets` builder per file suffix.
FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
    ".text": "text",
}


def load_corpus(config: CorpusConfig, tokenizer=None) -> pd.DataFrame:
    """The validated sample table (columns sample_id, text, source) described by `config`.

    Samples are cut (characters, then tokens), short ones dropped, exact duplicates dropped (first
    kept), then shuffled with `config.seed` and limited to `config.num_samples`; rows come sorted by
    sample_id, which is the sample's index in the source.

    Args:
        config: where the texts come from and how they are cut.
        tokenizer: the subject model's tokenizer; needed only when `config.max_tokens` is set.
    """
    if config.max_tokens is not None and tokenizer is None:
        raise CorpusError("corpus.max_tokens is set but no tokenizer was given; pass the subject model's tokenizer")
    sources, texts = _read_source(config)
    texts = [text[: config.max_chars] for text in texts] if config.max_chars is not None else texts
    if config.max_tokens is not None:
        texts = _cut_to_tokens(texts, tokenizer, config.max_tokens)
    keep = [i for i, text in enumerate(texts) if len(text) >= max(config.min_chars, 1)]
    if config.deduplicate:
        seen: set[str] = set()
        keep = [i for i in keep if not (texts[i] in seen or seen.add(texts[i]))]
    if not keep:
        raise CorpusError(
            f"corpus {config.source!r} is empty after cutting and filtering ({len(texts)} texts read, none "
            f"with at least {config.min_chars} characters left); lower corpus.min_chars or check the column"
        )
    if config.shuffle:
        keep = [keep[i] for i in np.random.default_rng(config.seed).permutation(len(keep))]
    keep = sorted(keep[: config.num_samples] if config.num_samples is not None else keep)
    samples = pd.DataFrame({"sample_id": keep, "text": [texts[i] for i in keep], "source": [sources[i] for i in keep]})
    return validate_samples(samples, config.source)


def _read_source(config: CorpusConfig) -> tuple[list[str], list[str]]:
    """(sources, texts) in source order."""
    if config.source in EMBEDDED_CORPORA:
        records = EMBEDDED_CORPORA.get(config.source)()
        return [source for source, _ in records], [text for _, text in records]
    path = Path(config.source).expanduser()
    if path.exists():
        dataset = _load_local(path, config)
        label = f"file:{path.name}"
    elif path.suffix.lower() in FILE_BUILDERS or config.source.startswith((".", "/", "~")):
        raise CorpusError(f"corpus file {config.source} does not exist (resolved to {path.resolve()})")
    else:
        dataset = _load_hub(config)
        label = f"hub:{config.source}"
    if config.text_column not in dataset.column_names:
        raise CorpusError(
            f"corpus {config.source!r} has no column {config.text_column!r}; its columns are "
            f"{', '.join(map(repr, dataset.column_names))}. Set corpus.text_column to one of them"
        )
    texts = [value for value in dataset[config.text_column] if value is not None]
    wrong = next((value for value in texts if not isinstance(value, str)), None)
    if wrong is not None:
        raise CorpusError(
            f"corpus {config.source!r}: column {config.text_column!r} holds {type(wrong).__name__} values "
            f"(e.g. {wrong!r}), not text; pick a text column with corpus.text_column"
        )
    return [label] * len(texts), texts


def _load_local(path: Path, config: CorpusConfig):
    import datasets

    try:
        if path.is_dir():
            return datasets.load_dataset(str(path), split=config.split)
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if path.stat().st_size == 0:  # datasets fails on it with no reason worth showing
            raise CorpusError(f"corpus file {path} is empty (0 bytes); give a file with at least one text")
        if builder is None:
            raise CorpusError(
                f"corpus file {path} has an unknown type {path.suffix!r}; use one of {', '.join(sorted(FILE_BUILDERS))}"
            )
        return datasets.load_dataset(builder, data_files=str(path), split=config.split)
    except CorpusError:
        raise
    except Exception as error:  # datasets raises many unrelated types for unreadable files
        raise CorpusError(
            f"cannot read corpus file {path} (split {config.split!r}): {type(error).__name__}: {error}"
        ) from error


def _load_hub(config: CorpusConfig):
    import datasets

    try:
        return datasets.load_dataset(config.source, split=config.split)
    except Exception as error:  # offline, unknown id, unknown split, gated repo...
        raise CorpusError(
            f"cannot load corpus {config.source!r} (split {config.split!r}): it is not an embedded corpus "
            f"({', '.join(EMBEDDED_CORPORA)}), not an existing local file, and the Hugging Face hub gave: "
            f"{type(error).__name__}: {error}. Offline (HF_HUB_OFFLINE=1) only datasets already in the local "
            "cache load; otherwise give a local json/jsonl/csv/parquet/txt file"
        ) from error


def _cut_to_tokens(texts: list[str], tokenizer, max_tokens: int) -> list[str]:
    """Each text cut after its first `max_tokens` tokens, at the character where that token ends."""
    offsets = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [
        text if len(spans) <= max_tokens else text[: spans[max_tokens - 1][1]] for text, spans in zip(texts, offsets)
    ]
