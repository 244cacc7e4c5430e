"""Steered generation for faithfulness.

`ContinuationEngine` serves every feature of an evaluation: the features share their prompts (deviation E11
in docs/fade-deviations.md), a factor that leaves the model unchanged is continued once per prompt for all
features, and one `generate` call takes (prompt, feature, factor) rows of several features, each row steered
with its own feature and factor. `generate_continuations` is the unshared computation (one feature's rows,
nothing reused), the shape of the FADE reference's step: the benchmark's baseline and the tests' oracle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig

from harness.errors import SiteError
from harness.evaluate.fade.prompt_prefix import Followed, PromptPrefixes, site_layer
from harness.sites import FeatureSite, input_device


@dataclass(frozen=True)
class Steering:
    """How one batch row is steered: `feature` None means not at all (a factor that changes nothing)."""

    feature: int | None
    factor: float
    reference: float | None = None


_UNCHANGED = Steering(None, 1.0)


@contextmanager
def steer_rows(site: FeatureSite, model: Any, rows: Sequence[Steering]) -> Iterator[None]:
    """Like `site.steer`, but batch row i is steered as `rows[i]` says.

    Stacking rows of several features and factors into one batch is what lets their continuations come
    from one `generate` call; each row gets exactly what `site.steer` with its settings would give it.
    """
    groups: dict[tuple[int, float, float | None], list[int]] = {}
    for index, row in enumerate(rows):
        if row.feature is not None:
            groups.setdefault((row.feature, row.factor, row.reference), []).append(index)
    if groups:  # a batch of rows that are all left unchanged steers nothing
        site.resolve_features(sorted({feature for feature, _, _ in groups}))
    indexed = [(key, torch.tensor(indices)) for key, indices in groups.items()]

    def change(tensor: torch.Tensor) -> torch.Tensor | None:
        if tensor.shape[0] != len(rows):
            raise SiteError(
                f"steering expected a batch of {len(rows)} rows at {site.module_path}, got {tensor.shape[0]}"
            )
        if not indexed:
            return None
        steered = tensor.clone()
        for (feature, factor, reference), indices in indexed:
            indices = indices.to(tensor.device)
            steered[indices] = site.steered(tensor.index_select(0, indices), feature, factor, reference)
        return steered

    with site.intercept(model, change):
        yield


def generate_rows(
    loaded_model: Any,
    site: FeatureSite,
    prompts: Sequence[str],
    rows: Sequence[Steering],
    *,
    generation_length: int,
    max_prompt_tokens: int,
) -> list[str]:
    """One `generate` call: greedy continuations of exactly `generation_length` new tokens, row i being
    `prompts[i]` steered as `rows[i]`.

    Prompts are left-padded; only the new tokens are decoded (special tokens skipped), as the reference does.
    Deviation from the FADE reference: prompts are cut to the activation engine's max_length (it feeds them
    whole), and decoding is greedy whatever the model's generation config says (it calls generate with the
    model's defaults, which sample for models that ship do_sample=true).
    """
    tokenizer = loaded_model.tokenizer
    settings = GenerationConfig(
        max_new_tokens=generation_length,
        min_new_tokens=generation_length,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=loaded_model.model.generation_config.eos_token_id,
    )
    encoded = tokenizer(
        list(prompts),
        padding=True,
        truncation=True,
        max_length=max_prompt_tokens,
        padding_side="left",
        return_tensors="pt",
    )
    device = input_device(loaded_model)
    with steer_rows(site, loaded_model, rows), torch.inference_mode():
        output = loaded_model.model.generate(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=encoded["attention_mask"].to(device),
            generation_config=settings,
        )
    new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu()
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


@dataclass(frozen=True)
class Continuations:
    """`texts[f][p]`: the continuation of prompt p under factor f; `generate_calls`: model.generate calls
    that computed some of them (calls shared with other features count for each)."""

    texts: list[list[str]]
    generate_calls: int


def prompt_lengths(loaded_model: Any, texts: Sequence[str], max_prompt_tokens: int) -> list[int]:
    """Token counts of the prompts as generation sees them (cut to `max_prompt_tokens`)."""
    encoded = loaded_model.tokenizer(list(texts), truncation=True, max_length=max_prompt_tokens)
    return [len(ids) for ids in encoded["input_ids"]]


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
    """Every prompt under every factor for one feature, computing everything: no row shared or reused.

    Rows are ordered by prompt length so that a batch pads little, `batch_rows` per generate call.
    """
    lengths = prompt_lengths(loaded_model, prompts, max_prompt_tokens)
    rows = [(p, f) for p in np.argsort(lengths, kind="stable").tolist() for f in range(len(factors))]
    texts = [[""] * len(prompts) for _ in factors]
    calls = 0
    for start in range(0, len(rows), batch_rows):
        batch = rows[start : start + batch_rows]
        answers = generate_rows(
            loaded_model,
            site,
            [prompts[p] for p, _ in batch],
            [Steering(feature, float(factors[f]), reference) for _, f in batch],
            generation_length=generation_length,
            max_prompt_tokens=max_prompt_tokens,
        )
        calls += 1
        for (p, f), text in zip(batch, answers):
            texts[f][p] = text
    return Continuations(texts=texts, generate_calls=calls)


# Runs a function on the subject model's worker thread (the evaluation's `on_model`).
RunOnModel = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class _Pending:
    prompt: int  # position in the engine's texts
    steering: Steering
    answer: asyncio.Future[tuple[str, int]]  # the continuation, and the number of the generate call made it


class ContinuationEngine:
    """Steered continuations for all the features of one evaluation, computed once where they coincide.

    Features ask concurrently (`continuations`); their rows wait in one queue, and whenever the subject model
    is free the next `batch_rows` rows become one `generate` call, whichever features they belong to. A row
    whose steering changes nothing (`site.steering_is_identity`, e.g. a neuron's factor 1) is computed once
    per prompt and shared, and so is every prompt's pass through the layers below the site, and along the
    prompt's unchanged continuation for as long as a steered row decodes the same tokens (PromptPrefixes, where
    the model allows it). Each feature's rows enter the queue ordered by prompt length.
    """

    def __init__(
        self,
        loaded_model: Any,
        site: FeatureSite,
        texts: Sequence[str],
        run_on_model: RunOnModel,
        *,
        generation_length: int,
        max_prompt_tokens: int,
        batch_rows: int,
    ) -> None:
        self._model = loaded_model
        self._site = site
        self._texts = list(texts)
        self._run_on_model = run_on_model
        self._generation_length = generation_length
        self._max_prompt_tokens = max_prompt_tokens
        self._batch_rows = batch_rows
        layer = site_layer(loaded_model, site)
        self._prefixes = (
            PromptPrefixes(loaded_model, layer, max_prompt_tokens, generation_length) if layer is not None else None
        )
        self._lengths: list[int] | None = None
        # prompt -> its continuation by the unchanged model (awaited shielded: every feature shares it)
        self._unchanged: dict[int, asyncio.Future[tuple[str, int]]] = {}
        self._queue: list[_Pending] = []
        self._worker: asyncio.Task[None] | None = None
        self.generate_calls = 0  # generate calls made
        self.rows_generated = 0  # continuations computed (a shared one once)

    @property
    def followed(self) -> Followed | None:
        """What steered rows reused of the prompts' unchanged continuations; None where nothing is shared."""
        return self._prefixes.followed if self._prefixes is not None else None

    @property
    def unchanged_computed(self) -> int:
        """Prompts whose unchanged continuation was computed to be followed (0 where nothing is shared)."""
        return self._prefixes.unchanged_computed if self._prefixes is not None else 0

    async def continuations(
        self, feature: int, reference: float | None, positions: Sequence[int], factors: Sequence[float]
    ) -> Continuations:
        """The feature's continuation of every prompt (positions in the engine's texts) under every factor."""
        if self._lengths is None:
            self._lengths = await self._run_on_model(prompt_lengths, self._model, self._texts, self._max_prompt_tokens)
        loop = asyncio.get_running_loop()
        answers: list[list[Awaitable[tuple[str, int]] | None]] = [[None] * len(positions) for _ in factors]
        for index in sorted(range(len(positions)), key=lambda i: (self._lengths[positions[i]], i)):
            prompt = int(positions[index])
            for slot, factor in enumerate(factors):
                if self._site.steering_is_identity(float(factor), reference):
                    if prompt not in self._unchanged:
                        self._unchanged[prompt] = loop.create_future()
                        self._queue.append(_Pending(prompt, _UNCHANGED, self._unchanged[prompt]))
                    # A feature cancelled while waiting must not cancel what the others wait for too.
                    answers[slot][index] = asyncio.shield(self._unchanged[prompt])
                else:
                    future = loop.create_future()
                    self._queue.append(_Pending(prompt, Steering(feature, float(factor), reference), future))
                    answers[slot][index] = future
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        done = [[await answer for answer in row] for row in answers]  # type: ignore[misc]
        calls = {call for row in done for _, call in row}
        return Continuations(texts=[[text for text, _ in row] for row in done], generate_calls=len(calls))

    def _generate(self, prompts: list[str], rows: list[Steering]) -> list[str]:
        """One batch on the model's thread: from the shared below-site prefixes when the model allows it."""
        if self._prefixes is None:
            return generate_rows(
                self._model,
                self._site,
                prompts,
                rows,
                generation_length=self._generation_length,
                max_prompt_tokens=self._max_prompt_tokens,
            )
        return self._prefixes.generate(
            prompts,
            lambda indices: steer_rows(
                self._site, self._model, [rows[i] if i is not None else _UNCHANGED for i in indices]
            ),
            [row.feature is None for row in rows],
        )

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._batch_rows], self._queue[self._batch_rows :]
            # A feature cancelled while waiting cancels the row it waited on: not worth computing.
            batch = [pending for pending in batch if not pending.answer.done()]
            if not batch:
                continue
            try:
                answers = await self._run_on_model(
                    self._generate, [self._texts[pending.prompt] for pending in batch], [p.steering for p in batch]
                )
            except BaseException as error:
                # Every feature waiting on the model hears of its failure; the queue is dropped with it.
                for pending in [*batch, *self._queue]:
                    if not pending.answer.done():
                        pending.answer.set_exception(error)
                self._queue = []
                if isinstance(error, asyncio.CancelledError):
                    raise
                return
            self.generate_calls += 1
            self.rows_generated += len(batch)
            for pending, text in zip(batch, answers):
                if not pending.answer.done():
                    pending.answer.set_result((text, self.generate_calls))
