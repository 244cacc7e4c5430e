"""The subject-model work of the output-centric scorers, batched across features (docs/scorers/output-centric.md).

Every function takes the rows of many features at once: one forward (or one `generate`) serves a batch of
rows, each row changed at the site as its own feature says, and what no feature changes (the clean run) is
computed once. Rows sharing a prompt are batched together, so no row is padded and a row's numbers do not
depend on which other features share its batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from harness.errors import SiteError
from harness.evaluate.scorers._output_metrics import mean_kl, next_bracket, within
from harness.sites import FeatureSite, input_device, torch_model

# A row's change at the site: (feature, value) clamps the feature to value at every position; None: unchanged.
Clamp = tuple[int, float] | None


@dataclass
class ModelCounts:
    """Forward passes and generate calls made (the benchmark's counts)."""

    forwards: int = 0
    generate_calls: int = 0


def _encoded(model: Any, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    encoded = model.tokenizer(list(prompts), padding=True, padding_side="right", return_tensors="pt")
    device = input_device(model)
    return {name: encoded[name].to(device) for name in ("input_ids", "attention_mask")}


def _check_rows(site: FeatureSite, tensor: torch.Tensor, count: int) -> None:
    if tensor.shape[0] != count:
        raise SiteError(f"expected a batch of {count} rows at {site.module_path}, got {tensor.shape[0]}")


@contextmanager
def clamp_rows(site: FeatureSite, model: Any, rows: Sequence[Clamp]) -> Iterator[None]:
    """While active, batch row i has its feature clamped as `rows[i]` says (`site.clamped`) at every position."""
    clamped = sorted({row[0] for row in rows if row is not None})
    if clamped:
        site.resolve_features(clamped)

    def change(tensor: torch.Tensor) -> torch.Tensor:
        _check_rows(site, tensor, len(rows))
        changed = tensor.clone()
        for index, row in enumerate(rows):
            if row is not None:
                changed[index : index + 1] = site.clamped(tensor[index : index + 1], row[0], row[1])
        return changed

    with site.intercept(model, change):
        yield


@contextmanager
def add_at_last(site: FeatureSite, model: Any, vectors: torch.Tensor) -> Iterator[None]:
    """While active, batch row i's site tensor at the last position gets `vectors[i]` added (Arad et al.'s
    steering: for an SAE, the latent raised by an amount, the reconstruction error kept)."""

    def change(tensor: torch.Tensor) -> torch.Tensor:
        _check_rows(site, tensor, vectors.shape[0])
        changed = tensor.clone()
        changed[:, -1, :] += vectors.to(device=tensor.device, dtype=tensor.dtype)
        return changed

    with site.intercept(model, change):
        yield


def largest_activation_at_last(model: Any, site: FeatureSite, prompt: str) -> float:
    """The largest activation of any of the site's features at the prompt's last token (clean run)."""
    captured = site.run_to_site(model, _encoded(model, [prompt]))
    every = torch.arange(site.num_features, device=captured.device)
    return float(site.encode(captured[:, -1:, :], every).max())


def steered_next_token(
    model: Any, site: FeatureSite, prompt: str, vectors: torch.Tensor, batch_rows: int, counts: ModelCounts
) -> np.ndarray:
    """(rows, vocab) float64: the next-token distribution after `prompt`, row i with `vectors[i]` added at the
    site's last position; `batch_rows` rows per forward."""
    encoded = _encoded(model, [prompt])
    network = torch_model(model)
    parts = []
    for start in range(0, vectors.shape[0], batch_rows):
        chunk = vectors[start : start + batch_rows]
        batch = {name: value.expand(chunk.shape[0], -1) for name, value in encoded.items()}
        with add_at_last(site, model, chunk), torch.inference_mode():
            logits = network(**batch, use_cache=False).logits[:, -1, :]
        counts.forwards += 1
        parts.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
    return np.concatenate(parts)


class _Distributions:
    """The prompts' next-token distributions at every position, clean (once) and under clamps."""

    def __init__(self, model: Any, site: FeatureSite, prompts: Sequence[str], counts: ModelCounts) -> None:
        self.model, self.site, self.counts = model, site, counts
        self.encoded = _encoded(model, prompts)
        self.mask = self.encoded["attention_mask"].bool().cpu().numpy()
        self.clean = self._probabilities([None] * len(prompts))

    def _probabilities(self, rows: Sequence[Clamp]) -> np.ndarray:
        repeat = len(rows) // self.mask.shape[0]
        batch = {name: value.repeat(repeat, 1) for name, value in self.encoded.items()}
        with clamp_rows(self.site, self.model, rows), torch.inference_mode():
            logits = torch_model(self.model)(**batch, use_cache=False).logits
        self.counts.forwards += 1
        return torch.softmax(logits.double(), dim=-1).cpu().numpy()

    def kls(self, clamps: Sequence[tuple[int, float]], batch_rows: int) -> list[float]:
        """Gur-Arieh et al.'s KL (`mean_kl`) of each clamp, every clamp over every prompt."""
        count = self.mask.shape[0]
        per_batch = max(1, batch_rows // count)
        values = []
        for start in range(0, len(clamps), per_batch):
            chunk = clamps[start : start + per_batch]
            steered = self._probabilities([clamp for clamp in chunk for _ in range(count)])
            values += [mean_kl(self.clean, steered[i * count : (i + 1) * count], self.mask) for i in range(len(chunk))]
        return values


def clamp_values(
    model: Any,
    site: FeatureSite,
    prompts: Sequence[str],
    features: Sequence[int],
    targets: Sequence[float],
    *,
    bound: float,
    tolerance: float,
    max_steps: int,
    batch_rows: int,
    counts: ModelCounts,
) -> dict[tuple[int, float], float | None]:
    """(feature, target) -> the clamp value whose KL from the clean run is the target (negative targets: a
    negative value), or None when even +-`bound` stays below it.

    A bisection on |value| in [0, bound], every unfinished (feature, target) stepping in the same batches; it
    stops at a KL within [target, target + tolerance] or after `max_steps` steps, then takes the smallest
    value seen above the target (the bracket's upper end).
    """
    distributions = _Distributions(model, site, prompts, counts)
    signs = sorted({1.0 if target > 0 else -1.0 for target in targets})
    extremes = [(feature, sign * bound) for feature in features for sign in signs]
    at_bound = dict(zip(extremes, distributions.kls(extremes, batch_rows)))
    found: dict[tuple[int, float], float | None] = {}
    brackets: dict[tuple[int, float], tuple[float, float]] = {}
    for feature in features:
        for target in targets:
            sign = 1.0 if target > 0 else -1.0
            kl = at_bound[(feature, sign * bound)]
            if kl < abs(target):
                found[(feature, target)] = None
            elif within(kl, abs(target), tolerance):
                found[(feature, target)] = sign * bound
            else:
                brackets[(feature, target)] = (0.0, bound)
    for _ in range(max_steps):
        if not brackets:
            break
        keys = list(brackets)
        middles = [(brackets[key][0] + brackets[key][1]) / 2 for key in keys]
        kls = distributions.kls(
            [(feature, middle if target > 0 else -middle) for (feature, target), middle in zip(keys, middles)],
            batch_rows,
        )
        for key, middle, kl in zip(keys, middles, kls):
            target = abs(key[1])
            if within(kl, target, tolerance):
                found[key] = middle if key[1] > 0 else -middle
                del brackets[key]
            else:
                brackets[key] = next_bracket(*brackets[key], middle, kl, target)
    for (feature, target), (_, high) in brackets.items():
        found[(feature, target)] = high if target > 0 else -high
    return found


class _RowSampler(LogitsProcessor):
    """Sampling at `temperature` as greedy decoding of logits / temperature + Gumbel noise, each row with its
    own seeded noise stream, so a row's text does not depend on the rows batched with it."""

    def __init__(self, temperature: float, seeds: Sequence[Sequence[int]]) -> None:
        self.temperature = temperature
        self.generators = [torch.Generator().manual_seed(_seed_of(seed)) for seed in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1 - 1e-12)))
        return scores.double() / self.temperature + gumbel.to(scores.device)


def _seed_of(parts: Sequence[int]) -> int:
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def sampled_continuations(
    model: Any,
    site: FeatureSite,
    prompt: str,
    rows: Sequence[Clamp],
    seeds: Sequence[Sequence[int]],
    *,
    generation_length: int,
    temperature: float,
    batch_rows: int,
    counts: ModelCounts,
) -> list[str]:
    """`prompt` continued by `generation_length` sampled tokens per row, row i clamped as `rows[i]` and sampled
    from its seed `seeds[i]`; `batch_rows` rows per `generate` call. Only the new tokens are decoded."""
    tokenizer = model.tokenizer
    settings = GenerationConfig(
        max_new_tokens=generation_length,
        do_sample=False,  # _RowSampler samples
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=model.model.generation_config.eos_token_id,
    )
    encoded = _encoded(model, [prompt])
    texts = []
    for start in range(0, len(rows), batch_rows):
        chunk = rows[start : start + batch_rows]
        batch = {name: value.expand(len(chunk), -1) for name, value in encoded.items()}
        sampler = LogitsProcessorList([_RowSampler(temperature, seeds[start : start + batch_rows])])
        with clamp_rows(site, model, chunk), torch.inference_mode():
            output = model.model.generate(**batch, generation_config=settings, logits_processor=sampler)
        counts.generate_calls += 1
        new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu()
        texts += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return texts
