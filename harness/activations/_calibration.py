"""The corpus as a site reads it, position by position, for sites calibrated on it (the random-SAE control)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.activations._forward import ignored_mask, tokenize
from harness.config import ACTIVATION_VALUE_SETTINGS, ActivationConfig, identity_payload
from harness.corpus import corpus_fingerprint, validate_samples
from harness.errors import CorpusError
from harness.files import identity_hash
from harness.sites import CalibrationCorpus, FeatureSite, input_device


def calibration_corpus(
    loaded_model: Any, corpus_df: pd.DataFrame, config: ActivationConfig, progress: bool = True
) -> CalibrationCorpus:
    """What build_site needs to calibrate a site on the corpus: its inputs are read only when a site asks.

    Args:
        loaded_model: the LoadedModel (model + tokenizer).
        corpus_df: the sample table (harness.corpus.load_corpus).
        config: batching, max length and the positions the activation pass skips.
        progress: show a progress bar during the pass.
    """
    samples = validate_samples(corpus_df, "given to calibration_corpus")
    texts = samples["text"].tolist()
    identity = identity_hash(
        {
            "model": loaded_model.identity,
            "corpus": corpus_fingerprint(samples),
            "positions": identity_payload(config, only=ACTIVATION_VALUE_SETTINGS),
        }
    )
    return CalibrationCorpus(
        inputs=lambda site: site_inputs(loaded_model, site, texts, config, progress), identity=identity
    )


def site_inputs(
    loaded_model: Any, site: FeatureSite, texts: list[str], config: ActivationConfig, progress: bool = False
) -> torch.Tensor:
    """(positions, width) float32 on the model's device: the site's module tensor at every position of `texts`
    that the activation pass reads (same tokenization, batching and skipped positions), text by text.

    Args:
        loaded_model: the LoadedModel.
        site: the feature site whose module tensor is read.
        texts: the corpus texts.
        config: batch size, max length, positions to skip, early exit.
        progress: show a progress bar.
    """
    if not texts:
        raise CorpusError("the corpus to calibrate the site on has no samples; check corpus.source and filters")
    device = input_device(loaded_model)
    pieces = []
    with tqdm(total=len(texts), unit="sample", desc=f"calibration pass {site.module_path}", disable=not progress,
              dynamic_ncols=True) as bar:  # fmt: skip
        for start in range(0, len(texts), config.batch_size):
            encoded = tokenize(loaded_model.tokenizer, texts[start : start + config.batch_size], config.max_length)
            inputs = {name: encoded[name].to(device) for name in ("input_ids", "attention_mask")}
            captured = site.run_to_site(loaded_model, inputs, early_exit=config.early_exit)
            valid = ~ignored_mask(loaded_model.tokenizer, encoded, config).to(captured.device)
            pieces.append(captured[valid].float())
            bar.update(len(inputs["input_ids"]))
    return torch.cat(pieces)
