"""Steered generation for faithfulness: every (prompt, factor) row of a feature in as few `generate` calls
as `generation_batch_size` allows, each row steered with its own factor."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig

from harness.errors import SiteError
from harness.sites import FeatureSite, input_device


@contextmanager
def steer_rows(
    site: FeatureSite, model: Any, feature: int, row_factors: Sequence[float], reference: float | None
) -> Iterator[None]:
    """Like `site.steer`, but batch row i is steered with `row_factors[i]` (factor 0 is the baseline).

    Stacking the factors of a feature into one batch is what lets all its continuations come from one
    `generate` call; each row gets exactly what `site.steer` with that factor would give it.
    """
    site.resolve_features([feature])
    factors = np.asarray(row_factors, dtype=np.float64)
    groups = [(float(factor), torch.from_numpy(np.flatnonzero(factors == factor))) for factor in np.unique(factors)]

    def change(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape[0] != factors.size:
            raise SiteError(
                f"steering expected a batch of {factors.size} rows at {site.module_path}, got {tensor.shape[0]}"
            )
        steered = torch.empty_like(tensor)
        for factor, rows in groups:
            rows = rows.to(tensor.device)
            steered[rows] = site.steered(tensor.index_select(0, rows), feature, factor, reference)
        return steered

    with site.intercept(model, change):
        yield


@dataclass(frozen=True)
class Continuations:
    """`texts[f][p]`: the continuation of prompt p under factor f; `generate_calls`: model.generate calls made."""

    texts: list[list[str]]
    generate_calls: int


def generate_continuations(
    loaded_model: Any,
    site: FeatureSite,
    feature: int,
    reference: float | None,
    prompts: Sequence[str],
    factors: Sequence[float],
    *,
    generation_length: int,
    max_prompt_tokens: int,
    batch_rows: int,
) -> Continuations:
    """Greedy continuations of exactly `generation_length` new tokens for every prompt under every factor.

    Prompts are left-padded; rows are ordered by prompt length so that a batch pads little. Only the
    new tokens are decoded (special tokens skipped), as the reference does.

    Args:
        loaded_model: the LoadedModel.
        site: the feature's site; steering goes through its `steered`.
        feature: the feature index.
        reference: FADE's SAE steering scale (max |activation| on the corpus), None for neuron sites.
        prompts: natural samples used as prompts.
        factors: modification factors (0 = baseline).
        generation_length: new tokens per continuation (min = max).
        max_prompt_tokens: prompts are cut to this many tokens (the activation engine's max_length).
        batch_rows: most (prompt, factor) rows in one generate call.
    """
    tokenizer = loaded_model.tokenizer
    # Deviation from the FADE reference: prompts are cut to the activation engine's max_length (it feeds
    # them whole), and decoding is greedy whatever the model's generation config says (it calls generate
    # with the model's defaults, which sample for models that ship do_sample=true).
    token_ids = tokenizer(list(prompts), truncation=True, max_length=max_prompt_tokens)["input_ids"]
    prompt_lengths = [len(ids) for ids in token_ids]
    rows = [(p, f) for p in np.argsort(prompt_lengths, kind="stable").tolist() for f in range(len(factors))]
    settings = GenerationConfig(
        max_new_tokens=generation_length,
        min_new_tokens=generation_length,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=loaded_model.model.generation_config.eos_token_id,
    )
    texts = [[""] * len(prompts) for _ in factors]
    calls = 0
    for start in range(0, len(rows), batch_rows):
        batch = rows[start : start + batch_rows]
        encoded = tokenizer(
            [prompts[p] for p, _ in batch],
            padding=True,
            truncation=True,
            max_length=max_prompt_tokens,
            padding_side="left",
            return_tensors="pt",
        )
        device = input_device(loaded_model)
        with steer_rows(site, loaded_model, feature, [factors[f] for _, f in batch], reference), torch.inference_mode():
            output = loaded_model.model.generate(
                input_ids=encoded["input_ids"].to(device),
                attention_mask=encoded["attention_mask"].to(device),
                generation_config=settings,
            )
        calls += 1
        new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu()
        for (p, f), text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            texts[f][p] = text
    return Continuations(texts=texts, generate_calls=calls)
