"""Per-sample activations for arbitrary new texts (FADE clarity's synthetic samples)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.activations._extract import engine_key_material
from harness.activations._forward import forward_batch
from harness.activations._store import ArrayStore, CacheCorrupt
from harness.config import ActivationConfig
from harness.files import identity_hash
from harness.sites import FeatureSite, FeatureSpec, input_device


def activations_for_texts(
    loaded_model: Any,
    site: FeatureSite,
    texts: list[str],
    features: FeatureSpec,
    config: ActivationConfig,
    cache: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """(len(texts), F) float32: FADE's per-sample activation of each feature on each text.

    Same tokenization, batching and position rules as extract_activations, without top-k.

    Args:
        loaded_model: the LoadedModel.
        site: the feature site.
        texts: the texts, scored in order.
        features: feature indices (or 'all' / a FeatureRange).
        config: batch size, max length, positions to skip, cache folder.
        cache: keep the result under config.cache_dir, keyed by the texts' hash and the engine settings.
        progress: show a progress bar.
    """
    feature_ids = site.resolve_features(features)
    if not texts:
        return np.zeros((0, feature_ids.size), dtype=np.float32)
    if not cache:
        return _compute(loaded_model, site, texts, feature_ids, config, progress)
    texts_hash = hashlib.sha256(b"".join(hashlib.sha256(text.encode()).digest() for text in texts)).hexdigest()
    key = identity_hash({**engine_key_material(loaded_model, site, feature_ids, config), "texts": texts_hash})
    store = ArrayStore(Path(config.cache_dir) / "activations-texts" / key[:32], key)
    with store.exclusive():
        manifest = store.read_manifest()
        if manifest is not None:
            try:
                return store.read_arrays(manifest["values"])["per_sample"]
            except (CacheCorrupt, KeyError, TypeError) as error:
                store.wipe(str(error))
        values = _compute(loaded_model, site, texts, feature_ids, config, progress)
        store.write_manifest({"values": store.write_arrays("values.npz", {"per_sample": values})})
        return values


def _compute(
    loaded_model: Any,
    site: FeatureSite,
    texts: list[str],
    feature_ids: np.ndarray,
    config: ActivationConfig,
    progress: bool,
) -> np.ndarray:
    features = torch.from_numpy(feature_ids).to(input_device(loaded_model))
    values = np.zeros((len(texts), feature_ids.size), dtype=np.float32)
    with tqdm(total=len(texts), unit="text", desc="activations for texts", disable=not progress) as bar:
        for start in range(0, len(texts), config.batch_size):
            batch_texts = texts[start : start + config.batch_size]
            batch = forward_batch(loaded_model, site, batch_texts, features, config)
            values[start : start + len(batch_texts)] = batch.per_sample.cpu().numpy()
            bar.update(len(batch_texts))
    return values
