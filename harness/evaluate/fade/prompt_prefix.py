"""The prompts' pass below the steering site, computed once and reused by every steered row.

Steering changes the site's module, so the decoder layers before the one holding the site see the same
prompt whatever the feature and factor: their keys, values and output hidden states are computed once per
prompt here, and each steered row runs only the layers from the site's layer up over its prompt, then
decodes greedily as `generate` does (the same calls, inputs and stopping rule, so the same tokens).

This follows the decoder forward of Llama-family models and Gemma 2 in transformers 5 (embed_tokens,
layers, rotary_emb, norm, lm_head). Where Gemma 2 differs, the difference is read from the model as its own
forward reads it: embed_tokens scales the embeddings and the attention caps its logits (both inside the
modules called here); each layer gets the mask of its kind, sliding-window or full, as its cache layer says
(the config's layer_types and sliding_window); and the head's logits are capped by the config's
final_logit_softcapping. Other models (Gemma 3's per-kind rotary embeddings, for one), or a site outside the
layers, are generated with `generate` (`site_layer` says None).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from harness.sites import FeatureSite, input_device, resolve_module, torch_model

# Model types whose decoder forward is the one reproduced here (transformers 5).
_REPRODUCED_DECODERS = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma2"})


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


@dataclass(frozen=True)
class _Prefix:
    """One prompt below the site: the hidden states entering the site's layer (tokens, width), and each
    lower layer's keys and values (heads, tokens, head_dim), unpadded."""

    hidden: torch.Tensor
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


class PromptPrefixes:
    """The below-site pass of every prompt, computed on first use (on the model's thread) and kept."""

    def __init__(self, loaded_model: Any, layer: int, max_prompt_tokens: int) -> None:
        self._loaded = loaded_model
        self._network = torch_model(loaded_model)
        self._layer = layer
        self._max_prompt_tokens = max_prompt_tokens
        self._prefixes: dict[str, _Prefix] = {}

    def _compute(self, prompts: Sequence[str]) -> None:
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
        # Every prompt token's keys and values are kept, sliding-window layers' too: the steered rows' cache
        # cuts them to the window as generate's does.
        cache = DynamicCache()
        positions = _positions(mask)
        with torch.inference_mode():
            hidden = decoder.embed_tokens(ids)
            masks = self._causal_masks(hidden, mask, positions)
            hidden = self._through(range(self._layer), hidden, masks, positions, cache)
        for row, prompt in enumerate(missing):
            real = mask[row].bool()
            self._prefixes[prompt] = _Prefix(
                hidden=hidden[row, real],
                keys=tuple(cache.layers[i].keys[row][:, real] for i in range(self._layer)),
                values=tuple(cache.layers[i].values[row][:, real] for i in range(self._layer)),
            )

    def _causal_masks(self, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> list[Any]:
        """Each decoder layer's causal mask (sliding-window where its cache layer is) for a left-padded prompt
        batch with nothing cached before it."""
        empty = DynamicCache(config=self._network.config)
        kinds = {False: create_causal_mask, True: create_sliding_window_causal_mask}
        built = {
            sliding: kinds[sliding](
                config=self._network.config,
                inputs_embeds=hidden,
                attention_mask=mask,
                cache=empty,
                position_ids=positions,
            )
            for sliding in set(empty.is_sliding)
        }
        return [built[sliding] for sliding in empty.is_sliding]

    def _through(
        self, layers: range, hidden: torch.Tensor, masks: list[Any], positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        """`hidden` (a left-padded prompt batch) through the decoder layers numbered `layers` as the decoder's
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

    def generate(self, prompts: Sequence[str], steer: Any, *, generation_length: int) -> list[str]:
        """Greedy continuations of exactly `generation_length` new tokens of `prompts`, row i steered while
        `steer` (steer_rows for these rows) is active; what `generate_rows` gives, from the shared prefixes."""
        self._compute(prompts)
        network, decoder = self._network, self._network.model
        prefixes = [self._prefixes[p] for p in prompts]
        width = max(prefix.hidden.shape[0] for prefix in prefixes)
        device = prefixes[0].hidden.device

        def padded(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
            """Left-pad each tensor with zeros along `dim` to `width`, and stack them (masked positions)."""
            out = []
            for tensor in tensors:
                shape = list(tensor.shape)
                shape[dim] = width - tensor.shape[dim]
                out.append(torch.cat([tensor.new_zeros(shape), tensor], dim=dim))
            return torch.stack(out)

        mask = padded([torch.ones(p.hidden.shape[0], dtype=torch.long, device=device) for p in prefixes], 0)
        positions = _positions(mask)
        cache = DynamicCache(config=network.config)
        eos = network.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        new_tokens = []
        with steer, torch.inference_mode():
            hidden = padded([p.hidden for p in prefixes], 0)
            masks = self._causal_masks(hidden, mask, positions)
            for index in range(self._layer):
                cache.update(
                    padded([p.keys[index] for p in prefixes], 1), padded([p.values[index] for p in prefixes], 1), index
                )
            hidden = self._through(range(self._layer, len(decoder.layers)), hidden, masks, positions, cache)
            logits = self._last_logits(hidden)
            for step in range(generation_length):
                logits[:, eos] = -float("inf")  # min_new_tokens = generation_length: no end before the last token
                token = logits.argmax(dim=-1)
                new_tokens.append(token)
                if step + 1 == generation_length:
                    break
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
                positions = positions[:, -1:] + 1
                output = network(
                    input_ids=token[:, None].to(device),
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = output.logits[:, -1, :].float()
        return self._loaded.tokenizer.batch_decode(torch.stack(new_tokens, dim=1).cpu(), skip_special_tokens=True)
