"""The prompts' pass below the steering site, computed once and reused by every steered row, and followed
along each prompt's unchanged continuation.

Steering changes the site's module, so the decoder layers before the one holding the site see the same
prompt whatever the feature and factor: their keys, values and output hidden states are computed once per
prompt here, and each steered row runs only the layers from the site's layer up over its prompt. The same
holds while a steered row decodes the tokens the unchanged model would: as long as its continuation so far
is the prompt's unchanged continuation (greedy, computed once per prompt), its next token's pass below the
site is the one already computed for that continuation. Only from the first token where a row leaves it
does the row run the lower layers itself, from a key/value cache built from the shared states. Steering
with a small factor rarely changes a token, so most rows follow for long (benchmarks/README.md). Every
row decodes greedily as `generate` does (the same calls, inputs and stopping rule, so the same tokens).

This follows the decoder forward of Llama-family models and Gemma 2 in transformers 5 (embed_tokens,
layers, rotary_emb, norm, lm_head). Where Gemma 2 differs, the difference is read from the model as its own
forward reads it: embed_tokens scales the embeddings and the attention caps its logits (both inside the
modules called here); each layer gets the mask of its kind, sliding-window or full, as its cache layer says
(the config's layer_types and sliding_window); and the head's logits are capped by the config's
final_logit_softcapping. Other models (Gemma 3's per-kind rotary embeddings, for one), or a site outside the
layers, are generated with `generate` (`site_layer` says None).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from harness.sites import FeatureSite, input_device, resolve_module, torch_model

# Model types whose decoder forward is the one reproduced here (transformers 5).
_REPRODUCED_DECODERS = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma2"})

# Steers the given rows of a batch (their positions in it, in order; None: a row to leave unchanged) while active.
SteerRows = Callable[[Sequence[int | None]], AbstractContextManager[Any]]


def site_layer(model: Any, site: FeatureSite) -> int | None:
    """Index of the decoder layer that holds the site's module (or is it), when layers below it exist and
    the model's decoder is one reproduced here; else None (nothing to share)."""
    network = torch_model(model)
    if getattr(network.config, "model_type", None) not in _REPRODUCED_DECODERS or not hasattr(network, "model"):
        return None
    layers = getattr(network.model, "layers", None)
    if layers is None:
        return None
    target = resolve_module(network, site.module_path)
    for index, layer in enumerate(layers):
        if any(module is target for module in layer.modules()):
            return index or None
    return None


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids from a left-padded attention mask, as `generate` makes them."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


class _Buffer:
    """One decoder layer's keys and values for a whole decode, in tensors allocated once (rows, heads,
    positions, head_dim), zero where nothing was written (left padding): a new token is written in place where
    DynamicLayer copies the whole cache (torch.cat) at every step, which cost a third of a decode step."""

    def __init__(self, rows: int, heads: int, positions: int, head_dim: int, like: torch.Tensor) -> None:
        self.keys = like.new_zeros(rows, heads, positions, head_dim)
        self.values = like.new_zeros(rows, heads, positions, head_dim)
        self.rows = 0  # rows in use
        self.length = 0  # positions in use

    def used(self, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[: self.rows, :, start : self.length], self.values[: self.rows, :, start : self.length]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """New positions of every row in use."""
        end = self.length + keys.shape[-2]
        self.keys[: self.rows, :, self.length : end] = keys
        self.values[: self.rows, :, self.length : end] = values
        self.length = end


class _BufferedLayer(DynamicLayer):
    """A full-attention cache layer over a `_Buffer`: what DynamicLayer holds and returns, without the copies."""

    def __init__(self, buffer: _Buffer) -> None:
        super().__init__()
        self.buffer = buffer
        self.is_initialized = True
        self.keys, self.values = buffer.used()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.buffer.append(key_states, value_states)
        self.keys, self.values = self.buffer.used()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.buffer.length


class _BufferedSlidingLayer(DynamicSlidingWindowLayer):
    """A sliding-window cache layer over a `_Buffer`: it returns the states DynamicSlidingWindowLayer returns
    (the last sliding_window - 1 positions before the new ones, and those) and reports the same mask sizes."""

    def __init__(self, buffer: _Buffer, sliding_window: int) -> None:
        super().__init__(sliding_window=sliding_window)
        self.buffer = buffer
        self.is_initialized = True
        self.cumulative_length = buffer.length
        self.keys, self.values = buffer.used(max(buffer.length - sliding_window + 1, 0))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        before = self.buffer.length
        self.cumulative_length += key_states.shape[-2]
        self.buffer.append(key_states, value_states)
        self.keys, self.values = self.buffer.used(max(before - self.sliding_window + 1, 0))
        return self.keys, self.values


@dataclass(frozen=True)
class _Prefix:
    """One prompt below the site, then its unchanged continuation: the hidden states entering the site's layer
    (positions, width) and each lower layer's keys and values (heads, positions, head_dim), unpadded, for the
    prompt's `prompt_tokens` tokens followed by the continuation's tokens but the last; `tokens` is the
    continuation (generation_length token ids), None until a batch has computed it (the states then the
    prompt's only)."""

    hidden: torch.Tensor
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    prompt_tokens: int
    tokens: torch.Tensor | None


@dataclass
class Followed:
    """What steered rows took from the unchanged continuations: row-steps of the lower layers reused from
    them and row-steps the rows computed themselves after leaving them; `left_after[n]`, rows that left
    after following n tokens (a row that never leaves is not counted)."""

    reused: int = 0
    computed: int = 0
    left_after: Counter[int] = field(default_factory=Counter)


class PromptPrefixes:
    """The below-site pass of every prompt and its unchanged continuation, computed on first use (on the
    model's thread) and kept."""

    def __init__(self, loaded_model: Any, layer: int, max_prompt_tokens: int, generation_length: int) -> None:
        self._loaded = loaded_model
        self._network = torch_model(loaded_model)
        self._layer = layer
        self._max_prompt_tokens = max_prompt_tokens
        self._length = generation_length
        self._prefixes: dict[str, _Prefix] = {}
        eos = self._network.generation_config.eos_token_id
        self._eos = [eos] if isinstance(eos, int) else list(eos or [])
        self._sliding = DynamicCache(config=self._network.config).is_sliding  # per layer: a sliding window?
        self.followed = Followed()
        self.unchanged_computed = 0  # prompts whose unchanged continuation was computed

    @property
    def _below(self) -> range:
        return range(self._layer)

    @property
    def _above(self) -> range:
        return range(self._layer, len(self._network.model.layers))

    def generate(self, prompts: Sequence[str], steer: SteerRows, unchanged: Sequence[bool]) -> list[str]:
        """Greedy continuations of exactly generation_length new tokens of `prompts`, row i steered by
        `steer` unless `unchanged[i]`; what `generate_rows` gives, from the shared states.

        A prompt whose unchanged continuation is not known yet gets it computed in this batch, by its unchanged
        row or by a row added to lead (`steer` then hears None for it: leave it unchanged)."""
        self._compute(prompts)
        tokens: list[torch.Tensor | None] = [None] * len(prompts)
        decoded: list[int | None] = []  # the batch decoded: rows of `prompts`, None for an added leader
        decoded_prompts: list[str] = []
        leaders: dict[str, int] = {}  # prompt -> the position in `decoded` of the row computing its continuation
        for row, (prompt, same) in enumerate(zip(prompts, unchanged)):
            if same and (self._prefixes[prompt].tokens is not None or prompt in leaders):
                continue  # the prompt's unchanged continuation, known or computed here
            if same:
                leaders[prompt] = len(decoded)
            decoded.append(row)
            decoded_prompts.append(prompt)
        for prompt in dict.fromkeys(decoded_prompts):
            if self._prefixes[prompt].tokens is None and prompt not in leaders:
                leaders[prompt] = len(decoded)
                decoded.append(None)
                decoded_prompts.append(prompt)
        if decoded:
            ids = self._decode(decoded_prompts, leaders, lambda rows: steer([decoded[r] for r in rows]))
            for position, row in enumerate(decoded):
                if row is not None:
                    tokens[row] = ids[position]
        rows = [row if row is not None else self._prefixes[prompt].tokens for row, prompt in zip(tokens, prompts)]
        return self._loaded.tokenizer.batch_decode(torch.stack(rows).cpu(), skip_special_tokens=True)  # type: ignore[arg-type]

    def _compute(self, prompts: Sequence[str]) -> None:
        """The missing prompts' pass below the site (their unchanged continuations come with their first batch)."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._prefixes))
        if not missing:
            return
        decoder = self._network.model
        encoded = self._loaded.tokenizer(
            missing,
            padding=True,
            truncation=True,
            max_length=self._max_prompt_tokens,
            padding_side="left",
            return_tensors="pt",
        )
        device = input_device(self._loaded)
        ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
        # Every prompt token's keys and values are kept, sliding-window layers' too: the rows' caches cut them
        # to the window as generate's does.
        cache = DynamicCache()
        positions = _positions(mask)
        with torch.inference_mode():
            hidden = decoder.embed_tokens(ids)
            masks = self._masks(hidden, mask, positions, DynamicCache(config=self._network.config), self._below)
            hidden = self._through(self._below, hidden, masks, positions, cache)
        for row, prompt in enumerate(missing):
            real = mask[row].bool()
            self._prefixes[prompt] = _Prefix(
                hidden=hidden[row, real],
                keys=tuple(cache.layers[i].keys[row][:, real] for i in self._below),
                values=tuple(cache.layers[i].values[row][:, real] for i in self._below),
                prompt_tokens=int(real.sum()),
                tokens=None,
            )

    def _decode(self, prompts: list[str], leaders: dict[str, int], steer: SteerRows) -> torch.Tensor:
        """Greedy decoding of one row per prompt, steered by `steer`: the token ids (rows, generation_length).

        The rows in `leaders` (one per prompt whose unchanged continuation is not known) are unchanged and run
        every layer; their continuations are kept for later batches. Every other row follows its prompt's
        unchanged continuation (its leader's in this batch, or the kept one): while its tokens are that
        continuation's, its pass below the site is the continuation's; from the first token where they differ
        it runs the lower layers itself, from a cache of the continuation's states so far."""
        decoder = self._network.model
        prefixes = [self._prefixes[p] for p in prompts]
        count = len(prefixes)
        lengths = [prefix.prompt_tokens for prefix in prefixes]
        width = max(lengths)
        device = prefixes[0].hidden.device
        mask = torch.zeros(count, width, dtype=torch.long, device=device)
        for row, length in enumerate(lengths):
            mask[row, width - length :] = 1
        positions = _positions(mask)
        leading = sorted(leaders.values())
        leader = [leaders.get(prompt, -1) for prompt in prompts]  # -1: follows the kept continuation
        guide = torch.tensor([row if lead < 0 else lead for row, lead in enumerate(leader)], device=device)
        kept = torch.tensor([lead < 0 for lead in leader], device=device)
        expected = torch.stack([p.tokens if p.tokens is not None else mask.new_zeros(self._length) for p in prefixes])
        following = torch.tensor([lead != row for row, lead in enumerate(leader)], device=device)
        # Rows running the lower layers, in the order of the rows of `below`: the leaders first.
        computing = list(leading)
        below = self._buffered(
            self._below, count, width + self._length - 1, {i: prefixes[0].keys[i] for i in self._below}, width
        )
        self._add_from_prefixes(below, prefixes, leading, [lengths[row] for row in leading], width)
        tokens: list[torch.Tensor] = []
        fed: list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]] = []  # the leaders', per step
        everyone = list(range(count))
        with torch.inference_mode():
            logits, above = self._prefill(prefixes, steer, width)
            for step in range(self._length):
                logits[:, self._eos] = -float("inf")  # min_new_tokens = generation_length: no end before the last
                token = logits.argmax(dim=-1)
                tokens.append(token)
                if step + 1 == self._length:
                    break
                mask = torch.cat([mask, mask.new_ones(count, 1)], dim=-1)
                positions = positions[:, -1:] + 1
                leaving = following & (token != torch.where(kept, expected[:, step], token[guide]))
                if leaving.any():
                    following &= ~leaving
                    left = leaving.nonzero().flatten().tolist()
                    from_kept = [row for row in left if leader[row] < 0]
                    from_leader = [row for row in left if leader[row] >= 0]
                    if from_kept:
                        seen = [lengths[row] + step for row in from_kept]
                        self._add_from_prefixes(below, prefixes, from_kept, seen, width + step)
                    if from_leader:
                        copied = torch.tensor([computing.index(leader[row]) for row in from_leader], device=device)
                        self._add_copies(below, copied)
                    computing = computing + from_kept + from_leader
                    self.followed.left_after[step] += len(left)
                hidden = torch.empty(
                    count, 1, prefixes[0].hidden.shape[-1], dtype=prefixes[0].hidden.dtype, device=device
                )
                if computing:
                    rows = torch.tensor(computing, device=device)
                    lower = decoder.embed_tokens(token[rows][:, None])
                    masks = self._masks(lower, mask[rows], positions[rows], below, self._below)
                    lower = self._through(self._below, lower, masks, positions[rows], below)
                    hidden[rows] = lower
                    if leading:
                        fed.append(
                            (
                                lower[: len(leading), 0].clone(),
                                [below.layers[i].keys[: len(leading), :, -1].clone() for i in self._below],
                                [below.layers[i].values[: len(leading), :, -1].clone() for i in self._below],
                            )
                        )
                followers = following.nonzero().flatten().tolist()
                from_kept = [row for row in followers if leader[row] < 0]
                from_leader = [row for row in followers if leader[row] >= 0]
                if from_kept:
                    hidden[from_kept] = torch.stack([prefixes[r].hidden[lengths[r] + step] for r in from_kept])[:, None]
                if from_leader:
                    hidden[from_leader] = hidden[[leader[row] for row in from_leader]]
                self.followed.reused += len(followers)
                self.followed.computed += len(computing) - len(leading)
                masks = self._masks(hidden, mask, positions, above, self._above)
                with steer(everyone):
                    hidden = self._through(self._above, hidden, masks, positions, above)
                logits = self._last_logits(hidden)
        ids = torch.stack(tokens, dim=1)
        self._keep_continuations(prompts, leading, ids, fed)
        return ids

    def _keep_continuations(
        self,
        prompts: list[str],
        leading: list[int],
        ids: torch.Tensor,
        fed: list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]],
    ) -> None:
        """Each leader's prompt prefix extended by its continuation's states (its tokens but the last, as fed)."""
        self.unchanged_computed += len(leading)
        for position, row in enumerate(leading):
            prefix = self._prefixes[prompts[row]]
            states, keys, values = [prefix.hidden], [[k] for k in prefix.keys], [[v] for v in prefix.values]
            for outputs, step_keys, step_values in fed:
                states.append(outputs[position : position + 1])
                for i in range(len(keys)):
                    keys[i].append(step_keys[i][position][:, None])
                    values[i].append(step_values[i][position][:, None])
            self._prefixes[prompts[row]] = _Prefix(
                hidden=torch.cat(states),
                keys=tuple(torch.cat(parts, dim=1) for parts in keys),
                values=tuple(torch.cat(parts, dim=1) for parts in values),
                prompt_tokens=prefix.prompt_tokens,
                tokens=ids[row],
            )

    def _prefill(self, prefixes: list[_Prefix], steer: SteerRows, width: int) -> tuple[torch.Tensor, DynamicCache]:
        """The rows' prompts through the layers from the site's up, rows of one prompt length together (no
        padding computed): the next-token logits and the upper layers' cache, left-padded to `width`."""
        by_length: dict[int, list[int]] = {}
        for row, prefix in enumerate(prefixes):
            by_length.setdefault(prefix.prompt_tokens, []).append(row)
        logits: torch.Tensor | None = None
        above: DynamicCache | None = None
        empty = DynamicCache(config=self._network.config)
        for length, rows in by_length.items():
            hidden = torch.stack([prefixes[row].hidden[:length] for row in rows])
            mask = torch.ones(len(rows), length, dtype=torch.long, device=hidden.device)
            positions = _positions(mask)
            cache = DynamicCache()  # every token's keys: the buffers below return sliding layers' window only
            with steer(rows):
                hidden = self._through(
                    self._above, hidden, self._masks(hidden, mask, positions, empty, self._above), positions, cache
                )
            group_logits = self._last_logits(hidden)
            if logits is None or above is None:
                logits = group_logits.new_empty(len(prefixes), group_logits.shape[-1])
                shapes = {i: cache.layers[i].keys for i in self._above}
                above = self._buffered(self._above, len(prefixes), width + self._length - 1, shapes, width)
            index = torch.tensor(rows, device=hidden.device)
            logits[index] = group_logits
            for i in self._above:
                buffer = above.layers[i].buffer
                buffer.keys[index, :, width - length : width] = cache.layers[i].keys
                buffer.values[index, :, width - length : width] = cache.layers[i].values
        assert logits is not None and above is not None
        for i in self._above:
            above.layers[i].buffer.rows = len(prefixes)
        return logits, above

    def _buffered(
        self, layers: range, rows: int, positions: int, like: dict[int, torch.Tensor], length: int
    ) -> DynamicCache:
        """A cache whose `layers` keep up to `rows` rows of `positions` positions in buffers, `length` positions
        counted as written and no row in use; buffer i is shaped (heads, head_dim) and typed like `like[i]`."""
        cache = DynamicCache(config=self._network.config)
        for i in layers:
            buffer = _Buffer(rows, like[i].shape[-3], positions, like[i].shape[-1], like[i])
            buffer.length = length
            window = getattr(cache.layers[i], "sliding_window", None) if self._sliding[i] else None
            cache.layers[i] = _BufferedSlidingLayer(buffer, window) if window else _BufferedLayer(buffer)
        return cache

    def _add_from_prefixes(
        self, cache: DynamicCache, prefixes: list[_Prefix], rows: list[int], seen: list[int], length: int
    ) -> None:
        """Rows after those in use in the lower layers of `cache`: row j the first `seen[j]` positions of its
        prefix, left-padded to `length` positions (those in use, or any while no row is)."""
        for i in self._below:
            layer = cache.layers[i]
            buffer = layer.buffer
            if not buffer.rows:  # nothing ran the layer since: the positions it would have written are padding
                buffer.length = length
                if isinstance(layer, _BufferedSlidingLayer):
                    layer.cumulative_length = length
            for slot, (row, count) in enumerate(zip(rows, seen), start=buffer.rows):
                buffer.keys[slot, :, buffer.length - count : buffer.length] = prefixes[row].keys[i][:, :count]
                buffer.values[slot, :, buffer.length - count : buffer.length] = prefixes[row].values[i][:, :count]
            buffer.rows += len(rows)

    def _add_copies(self, cache: DynamicCache, slots: torch.Tensor) -> None:
        """Copies of the rows `slots` of the lower layers of `cache` after those in use."""
        for i in self._below:
            buffer = cache.layers[i].buffer
            end = buffer.rows + len(slots)
            buffer.keys[buffer.rows : end, :, : buffer.length] = buffer.keys[slots, :, : buffer.length]
            buffer.values[buffer.rows : end, :, : buffer.length] = buffer.values[slots, :, : buffer.length]
            buffer.rows = end

    def _masks(
        self, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache, layers: range
    ) -> dict[int, Any]:
        """The causal mask of each of `layers` (sliding-window where its cache layer is) for a left-padded
        batch `hidden` after what `cache` holds, each kind built for its first layer in `layers`."""
        config = self._network.config
        sliding = self._sliding
        kinds = {False: create_causal_mask, True: create_sliding_window_causal_mask}
        built = {}
        for index in layers:
            kind = sliding[index]
            if kind not in built:
                built[kind] = kinds[kind](
                    config=config,
                    inputs_embeds=hidden,
                    attention_mask=mask,
                    cache=cache,
                    position_ids=positions,
                    layer_idx=index,
                )
        return {index: built[sliding[index]] for index in layers}

    def _through(
        self, layers: range, hidden: torch.Tensor, masks: dict[int, Any], positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """`hidden` (a left-padded batch) through the decoder layers numbered `layers` as the decoder's
        forward runs them, their keys and values going into `cache`."""
        decoder = self._network.model
        embeddings = decoder.rotary_emb(hidden, position_ids=positions)
        for index in layers:
            hidden = decoder.layers[index](
                hidden,
                attention_mask=masks[index],
                position_embeddings=embeddings,
                position_ids=positions,
                cache=cache,
                use_cache=True,
            )
        return hidden

    def _last_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The next-token logits after the last position, as the causal LM's forward makes them."""
        network = self._network
        logits = network.lm_head(network.model.norm(hidden)[:, -1:, :])
        cap = getattr(network.config, "final_logit_softcapping", None)
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
        return logits[:, -1, :].float()
