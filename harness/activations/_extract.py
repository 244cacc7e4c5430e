"""The activation engine: one pass per batch for every selected feature, sharded, cached, resumable.

Per shard of `shard_size` corpus rows: each process (under `accelerate launch`) runs its share in
batches, keeping per-sample values, a streaming top-k and the nonzero per-token values (`_tokens.py`, which
pools, delphi's windows and SAEBench's examples derive from without another pass); the shares are
gathered, the main process writes the shard's values, its per-token values and the running top-k, then
the manifest. An interrupted run resumes after the last shard the manifest lists. Results do not depend on
batch size, process count or resumption: the top-k order is total (value, then corpus row).
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.activations._forward import display_tokens, forward_batch
from harness.activations._processes import Processes, current_processes
from harness.activations._reduce import TopExamples
from harness.activations._store import ArrayStore, CacheCorrupt
from harness.activations._tokens import KeptTokens, empty_part, join_parts, sparse_part
from harness.activations.types import ActivatingExample, ActivationSet
from harness.config import ACTIVATION_CACHE_SETTINGS, ActivationConfig, identity_payload
from harness.corpus import corpus_fingerprint, validate_samples
from harness.errors import CorpusError
from harness.files import identity_hash
from harness.sites import FeatureSite, FeatureSpec, input_device

CACHE_FORMAT = 1
SINGLE_PROCESS = Processes()


def engine_key_material(
    loaded_model: Any, site: FeatureSite, feature_ids: np.ndarray, config: ActivationConfig
) -> dict:
    """What, besides the texts, determines activations: model, site, features and settings."""
    return {
        "format": CACHE_FORMAT,
        "model": loaded_model.identity,
        "site": site.identity,
        "features": hashlib.sha256(feature_ids.astype(np.int64).tobytes()).hexdigest(),
        "num_features": int(feature_ids.size),
        "settings": identity_payload(config, only=ACTIVATION_CACHE_SETTINGS),
    }


def extract_activations(
    loaded_model: Any,
    site: FeatureSite,
    corpus_df: pd.DataFrame,
    config: ActivationConfig,
    features: FeatureSpec | None = None,
    progress: bool = True,
) -> ActivationSet:
    """Per-sample activations of every selected feature over the corpus, plus top-k examples per feature.

    Cached under config.cache_dir, keyed by model, site, features, corpus content and settings, with the
    nonzero per-token values (`ActivationSet.token_values`, on disk); an interrupted run resumes from its
    last finished shard. Under `accelerate launch` each process runs a share of every shard and all get
    the same result.

    Args:
        loaded_model: the LoadedModel (model + tokenizer).
        site: the feature site (harness.sites.build_site).
        corpus_df: the sample table (harness.corpus.load_corpus).
        config: batching, max length, top-k, positions to skip, shard size, cache folder.
        features: which features; None = the site's configured selection.
        progress: show a progress bar.
    """
    samples = validate_samples(corpus_df, "given to extract_activations")
    if samples.empty:
        raise CorpusError("the corpus given to extract_activations has no samples; check corpus.source and filters")
    feature_ids = site.resolve_features(site.selection if features is None else features)
    material = {**engine_key_material(loaded_model, site, feature_ids, config), "corpus": corpus_fingerprint(samples)}
    key = identity_hash(material)
    store = ArrayStore(Path(config.cache_dir) / "activations" / key[:32], key)
    processes = current_processes()
    texts = samples["text"].tolist()
    shards = [
        np.arange(start, min(start + config.shard_size, len(texts)))
        for start in range(0, len(texts), config.shard_size)
    ]

    with store.exclusive() if processes.is_main else nullcontext():
        finished = _load_finished(store) if processes.is_main else None
        per_shard, top, entries, token_entries = processes.gather(finished)[0]
        if top is None:
            top = TopExamples.empty(feature_ids.size, config.top_k, config.max_length)
        if len(per_shard) < len(shards):
            features_on_device = torch.from_numpy(feature_ids).to(input_device(loaded_model))
            done = sum(shard.size for shard in shards[: len(per_shard)])
            with tqdm(
                total=len(texts), initial=done, unit="sample", desc=f"activations {site.kind}:{site.module_path}",
                disable=not (progress and processes.is_main), dynamic_ncols=True,
            ) as bar:  # fmt: skip
                for index in range(len(per_shard), len(shards)):
                    parts = processes.gather(
                        extract_part(
                            loaded_model,
                            site,
                            texts,
                            processes.split(shards[index]),
                            features_on_device,
                            config,
                            bar,
                            processes,
                        )
                    )
                    per_shard.append(np.concatenate([values for values, _, _ in parts]))
                    for _, part_top, _ in parts:
                        top.merge_top(part_top)
                    if processes.is_main:
                        tokens = join_parts([part_tokens for _, _, part_tokens in parts])
                        entries, token_entries = _commit_shard(
                            store, index, per_shard[-1], tokens, top, entries, token_entries, material
                        )
                    done += shards[index].size
                    bar.n = done  # exact count, also when processes' shares were uneven
                    bar.refresh()
            processes.wait()
            token_entries = processes.gather(token_entries if processes.is_main else None)[0]
        return ActivationSet(
            feature_ids=feature_ids,
            sample_ids=samples["sample_id"].to_numpy(dtype=np.int64),
            per_sample=np.concatenate(per_shard),
            top_examples=top_examples_from(loaded_model.tokenizer, samples, top, feature_ids, config),
            cache_key=key,
            token_values=KeptTokens(store, token_entries, config.shard_size, feature_ids.size),
        )


def extract_part(
    loaded_model: Any,
    site: FeatureSite,
    texts: list[str],
    rows: np.ndarray,
    features: torch.Tensor,
    config: ActivationConfig,
    bar: Any = None,
    processes: Processes = SINGLE_PROCESS,
) -> tuple[np.ndarray, TopExamples, dict[str, np.ndarray]]:
    """Per-sample values (len(rows), F), the top-k and the nonzero per-token values of corpus `rows`, batch by batch.

    Args:
        texts: every corpus text; `rows` index into it.
        features: int64 feature indices on the model's device.
        bar: progress bar to advance (by the batch size times the process count).
    """
    values = np.zeros((rows.size, features.numel()), dtype=np.float32)
    top = TopExamples.empty(features.numel(), config.top_k, config.max_length)
    tokens = [empty_part(config.max_length, features.numel())]
    for start in range(0, rows.size, config.batch_size):
        batch_rows = rows[start : start + config.batch_size]
        batch = forward_batch(loaded_model, site, [texts[row] for row in batch_rows], features, config)
        values[start : start + batch_rows.size] = batch.per_sample.cpu().numpy()
        top.merge_batch(batch.per_sample, batch.positions, batch.token_acts, batch_rows)
        tokens.append(sparse_part(batch.token_acts, batch.lengths, config.max_length))
        if bar is not None:
            bar.update(batch_rows.size * processes.num_processes)
    return values, top, join_parts(tokens)


def _load_finished(
    store: ArrayStore,
) -> tuple[list[np.ndarray], TopExamples | None, list[dict[str, str]], list[dict[str, str]]]:
    """The shards a previous run finished (verified, per-token files too), its top-k, and their manifest entries.

    A cache written before the per-token files existed has no `tokens` list: it is rebuilt, never half used.
    """
    manifest = store.read_manifest()
    if manifest is None:
        return [], None, [], []
    try:
        if "tokens" not in manifest:
            raise ValueError("it was written before the pass kept per-token values")
        entries, token_entries = list(manifest["shards"]), list(manifest["tokens"])
        if len(token_entries) != len(entries):
            raise ValueError(f"{len(entries)} shards but {len(token_entries)} per-token files")
        per_shard = [store.read_arrays(entry)["per_sample"] for entry in entries]
        for entry in token_entries:  # checked one at a time: never all per-token values in memory
            store.read_arrays(entry)
        top = TopExamples(**store.read_arrays(manifest["top"])) if entries else None
    except (CacheCorrupt, KeyError, TypeError, ValueError) as error:
        store.wipe(str(error))
        return [], None, [], []
    listed = {entry["file"] for entry in [*entries, *token_entries]}
    store.remove_unlisted(listed | ({manifest["top"]["file"]} if entries else set()))
    return per_shard, top, entries, token_entries


def _commit_shard(
    store: ArrayStore,
    index: int,
    values: np.ndarray,
    tokens: dict[str, np.ndarray],
    top: TopExamples,
    entries: list[dict[str, str]],
    token_entries: list[dict[str, str]],
    material: dict,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Write shard `index`, its per-token values and the running top-k, then the manifest that makes them count."""
    entries = [*entries, store.write_arrays(f"shard-{index:05d}.npz", {"per_sample": values})]
    token_entries = [*token_entries, store.write_arrays(f"tokens-{index:05d}.npz", tokens)]
    top_entry = store.write_arrays(f"top-{index:05d}.npz", asdict(top))
    store.write_manifest({"material": material, "shards": entries, "tokens": token_entries, "top": top_entry})
    store.remove(f"top-{index - 1:05d}.npz")
    return entries, token_entries


def top_examples_from(
    tokenizer: Any, samples: pd.DataFrame, top: TopExamples, feature_ids: np.ndarray, config: ActivationConfig
) -> dict[int, list[ActivatingExample]]:
    """ActivatingExamples per feature from a top-k state (tokens re-made by the tokenizer)."""
    rows = np.unique(top.rows[top.rows >= 0])
    texts = samples["text"].tolist()
    sample_ids = samples["sample_id"].tolist()
    shown = (
        dict(zip(rows.tolist(), display_tokens(tokenizer, [texts[row] for row in rows], config))) if rows.size else {}
    )
    examples: dict[int, list[ActivatingExample]] = {}
    for f, feature in enumerate(feature_ids.tolist()):
        examples[feature] = []
        for slot in np.flatnonzero(top.rows[f] >= 0):
            row = int(top.rows[f, slot])
            tokens, ignored_positions = shown[row]
            examples[feature].append(
                ActivatingExample(
                    sample_id=int(sample_ids[row]),
                    text=texts[row],
                    tokens=tokens,
                    activations=top.token_acts[f, slot, : len(tokens)].copy(),
                    max_activation=float(top.values[f, slot]),
                    max_position=int(top.positions[f, slot]),
                    ignored_positions=ignored_positions,
                )
            )
    return examples
