"""Examples derived from an activation pass (pools, delphi's windows, SAEBench's draws), cached on disk next to it.

Each reads the per-token values the activation pass kept for (part of) the corpus, seconds at 1,000 latents
(benchmarks/README.md, one-pass note); kept only in memory, every process and every run would pay that
again, where a read of the derived file takes a fifth to a tenth of it. An entry is keyed by the activation set's cache key (model, site, features, corpus, settings) plus
the derivation's own settings, written like the activation cache (files moved into place, the manifest
last, one writer at a time under the entry's lock) and stored without pickles: every example's strings
as UTF-8 bytes with offsets, its numbers as flat arrays with per-example lengths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from harness.activations._store import ArrayStore, CacheCorrupt
from harness.activations.types import ActivatingExample, ActivationSet, SAEBenchSample, WindowSample
from harness.files import identity_hash

FORMAT = 1
T = TypeVar("T")


def cached_derivation(
    cache_dir: str | Path, kind: str, activation_set: ActivationSet, settings: dict[str, Any], build: Callable[[], T]
) -> T:
    """`build()` once per (activation set, kind, settings) across processes and runs; later calls read its file.

    Args:
        cache_dir: the activation cache's folder (config.activations.cache_dir).
        kind: what is derived, a key of CODECS (its folder name): 'pools', 'delphi-windows', 'saebench'.
        activation_set: the pass it derives from (its `cache_key` names every input of that pass).
        settings: the derivation's own settings (JSON-able).
        build: makes the value (CODECS[kind] turns it into named arrays and back).
    """
    encode, decode = CODECS[kind]
    if not activation_set.cache_key:  # a set made by hand: nothing names its inputs, so nothing is kept
        return build()
    key = identity_hash({"format": FORMAT, "kind": kind, "activations": activation_set.cache_key, **settings})
    store = ArrayStore(Path(cache_dir) / kind / key[:32], key)
    with store.exclusive():
        manifest = store.read_manifest()
        if manifest is not None:
            try:
                return decode(store.read_arrays(manifest["values"]))
            except (CacheCorrupt, KeyError, TypeError, ValueError) as error:
                store.wipe(str(error))
        value = build()
        store.write_manifest({"values": store.write_arrays("values.npz", encode(value))})
        return value


def _pack_strings(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [text.encode("utf-8") for text in texts]
    ends = np.cumsum([len(item) for item in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), ends


def _unpack_strings(data: np.ndarray, ends: np.ndarray) -> list[str]:
    raw = data.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [raw[start:end].decode("utf-8") for start, end in zip(starts, ends.tolist())]


def _split(flat: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(counts)[:-1]) if counts.size else []


def encode_groups(groups: Sequence[Sequence[ActivatingExample]]) -> dict[str, np.ndarray]:
    """Lists of examples as flat arrays (`group_sizes` says how many examples each list has)."""
    examples = [example for group in groups for example in group]
    texts, text_ends = _pack_strings([example.text for example in examples])
    tokens, token_ends = _pack_strings([token for example in examples for token in example.tokens])
    return {
        "group_sizes": np.array([len(group) for group in groups], dtype=np.int64),
        "sample_id": np.array([example.sample_id for example in examples], dtype=np.int64),
        "texts": texts,
        "text_ends": text_ends,
        "tokens": tokens,
        "token_ends": token_ends,
        "token_counts": np.array([len(example.tokens) for example in examples], dtype=np.int64),
        "activations": np.concatenate([example.activations for example in examples] or [np.zeros(0)]).astype(
            np.float32
        ),
        "activation_counts": np.array([example.activations.size for example in examples], dtype=np.int64),
        "max_activation": np.array([example.max_activation for example in examples], dtype=np.float64),
        "max_position": np.array([example.max_position for example in examples], dtype=np.int64),
        "ignored": np.array([p for example in examples for p in example.ignored_positions], dtype=np.int64),
        "ignored_counts": np.array([len(example.ignored_positions) for example in examples], dtype=np.int64),
    }


def decode_groups(arrays: dict[str, np.ndarray]) -> list[list[ActivatingExample]]:
    """The lists `encode_groups` wrote, equal to the originals (float32 activations, Python floats)."""
    texts = _unpack_strings(arrays["texts"], arrays["text_ends"])
    tokens = _unpack_strings(arrays["tokens"], arrays["token_ends"])
    token_starts = np.concatenate([[0], np.cumsum(arrays["token_counts"])]).tolist()
    activations = _split(arrays["activations"], arrays["activation_counts"])
    ignored = _split(arrays["ignored"], arrays["ignored_counts"])
    examples = [
        ActivatingExample(
            sample_id=int(arrays["sample_id"][i]),
            text=texts[i],
            tokens=tokens[token_starts[i] : token_starts[i + 1]],
            activations=activations[i].copy(),
            max_activation=float(arrays["max_activation"][i]),
            max_position=int(arrays["max_position"][i]),
            ignored_positions=tuple(ignored[i].tolist()),
        )
        for i in range(len(texts))
    ]
    bounds = np.concatenate([[0], np.cumsum(arrays["group_sizes"])]).tolist()
    return [examples[start:end] for start, end in zip(bounds[:-1], bounds[1:])]


def encode_pools(pools: dict[int, list[ActivatingExample]]) -> dict[str, np.ndarray]:
    return {"features": np.array(list(pools), dtype=np.int64), **encode_groups(list(pools.values()))}


def decode_pools(arrays: dict[str, np.ndarray]) -> dict[int, list[ActivatingExample]]:
    return dict(zip(arrays["features"].tolist(), decode_groups(arrays)))


def encode_windows(windows: dict[int, WindowSample]) -> dict[str, np.ndarray]:
    samples = list(windows.values())
    return {
        "features": np.array(list(windows), dtype=np.int64),
        "num_windows": np.array([sample.num_windows for sample in samples], dtype=np.int64),
        "num_active": np.array([sample.num_active for sample in samples], dtype=np.int64),
        "test_slices": np.array([part for sample in samples for part in sample.test_slices], dtype=np.int64),
        **encode_groups([group for sample in samples for group in (sample.test, sample.not_active)]),
    }


def decode_windows(arrays: dict[str, np.ndarray]) -> dict[int, WindowSample]:
    groups = decode_groups(arrays)
    slices = iter(arrays["test_slices"].tolist())
    windows = {}
    for i, feature in enumerate(arrays["features"].tolist()):
        test, not_active = groups[2 * i], groups[2 * i + 1]
        windows[feature] = WindowSample(
            num_windows=int(arrays["num_windows"][i]),
            num_active=int(arrays["num_active"][i]),
            test=tuple(test),
            test_slices=tuple(next(slices) for _ in test),
            not_active=tuple(not_active),
        )
    return windows


def encode_saebench(samples: dict[int, SAEBenchSample]) -> dict[str, np.ndarray]:
    values = list(samples.values())
    return {
        "features": np.array(list(samples), dtype=np.int64),
        "active": np.array([flag for sample in values for flag in sample.active], dtype=bool),
        **encode_groups([group for sample in values for group in (sample.generation, sample.scoring)]),
    }


def decode_saebench(arrays: dict[str, np.ndarray]) -> dict[int, SAEBenchSample]:
    groups = decode_groups(arrays)
    active = iter(arrays["active"].tolist())
    samples = {}
    for i, feature in enumerate(arrays["features"].tolist()):
        generation, scoring = groups[2 * i], groups[2 * i + 1]
        samples[feature] = SAEBenchSample(
            generation=tuple(generation), scoring=tuple(scoring), active=tuple(next(active) for _ in scoring)
        )
    return samples


# What each derivation's value is stored as: (encode to named arrays, decode back).
CODECS: dict[str, tuple[Callable[[Any], dict[str, np.ndarray]], Callable[[dict[str, np.ndarray]], Any]]] = {
    "pools": (encode_pools, decode_pools),
    "delphi-windows": (encode_windows, decode_windows),
    "saebench": (encode_saebench, decode_saebench),
}
