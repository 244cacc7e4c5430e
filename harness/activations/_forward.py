"""One batch of texts through the model up to the site: feature activations for every selected feature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.activations._reduce import max_abs_per_sample, valid_token_mask
from harness.config import ActivationConfig
from harness.sites import FeatureSite, input_device


@dataclass
class BatchActivations:
    """Activations of one batch; tensors stay on the model's device."""

    token_acts: torch.Tensor  # (batch, tokens, F) float32, zero at ignored positions
    per_sample: torch.Tensor  # (batch, F) signed value at the largest |activation|
    positions: torch.Tensor  # (batch, F) its token position
    lengths: torch.Tensor  # (batch,) tokens of each sample (its unpadded length)


def tokenize(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Right-padded, truncated, no extra special tokens beyond what the tokenizer adds by itself."""
    return tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, padding_side="right", return_tensors="pt"
    )


def ignored_mask(tokenizer: Any, encoded: dict[str, torch.Tensor], config: ActivationConfig) -> torch.Tensor:
    """(batch, tokens) bool: positions the engine ignores (padding, and what the config skips)."""
    valid = valid_token_mask(
        encoded["input_ids"],
        encoded["attention_mask"],
        list(tokenizer.all_special_ids),
        config.skip_special_tokens,
        config.skip_first_positions,
    )
    return ~valid


def display_tokens(
    tokenizer: Any, texts: list[str], config: ActivationConfig
) -> list[tuple[list[str], tuple[int, ...]]]:
    """Per text: its tokens as the engine feeds them, decoded one by one, and the positions it ignores."""
    encoded = tokenize(tokenizer, texts, config.max_length)
    ignored = ignored_mask(tokenizer, encoded, config)
    shown = []
    for i in range(len(texts)):
        length = int(encoded["attention_mask"][i].sum())
        tokens = tokenizer.batch_decode([[token] for token in encoded["input_ids"][i, :length].tolist()])
        shown.append((tokens, tuple(torch.nonzero(ignored[i, :length]).flatten().tolist())))
    return shown


def forward_batch(
    loaded_model: Any, site: FeatureSite, texts: list[str], features: torch.Tensor, config: ActivationConfig
) -> BatchActivations:
    """Run `texts` up to the site (stopping there when config.early_exit) and encode the features.

    Args:
        loaded_model: the LoadedModel (model + tokenizer).
        site: the feature site.
        texts: the batch.
        features: int64 feature indices on the model's device.
        config: max_length, positions to skip, early exit.
    """
    encoded = tokenize(loaded_model.tokenizer, texts, config.max_length)
    device = input_device(loaded_model)
    inputs = {name: encoded[name].to(device) for name in ("input_ids", "attention_mask")}
    with torch.inference_mode():
        captured = site.run_to_site(loaded_model, inputs, early_exit=config.early_exit)
        token_acts = site.encode(captured, features.to(captured.device))
        valid = ~ignored_mask(loaded_model.tokenizer, encoded, config).to(token_acts.device)
        token_acts = token_acts.masked_fill(~valid.unsqueeze(-1), 0.0)
        per_sample, positions = max_abs_per_sample(token_acts, valid)
    return BatchActivations(
        token_acts=token_acts, per_sample=per_sample, positions=positions, lengths=encoded["attention_mask"].sum(dim=1)
    )
