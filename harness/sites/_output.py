"""Where a site's features write: each feature's direction in the residual stream, which output-centric
explainers and scorers read through the unembedding (Gur-Arieh et al. 2025, VocabProj; Arad et al. 2025).

A site's tensor reaches the residual stream through one linear map we can name, or it has no defined output
direction: the residual stream itself (a decoder layer's input or output, an MLP's or attention's output) maps
by the identity; the input of the linear layer that writes an MLP's or attention's result into the stream
(`down_proj`, `o_proj`, ...) maps by that layer's weight; a gated MLP's activation (`mlp.act_fn`'s output) maps
by its `down_proj` too: its product with `up_proj`'s output scales each neuron per token, the direction stays.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import SiteError
from harness.sites._base import resolve_module, torch_model

# Linear layers whose output is added to the residual stream (Llama/Mistral/Qwen/Gemma, OPT/BART, NeoX).
RESIDUAL_WRITERS = ("down_proj", "o_proj", "out_proj", "fc2", "dense_4h_to_h")
# Modules whose output is (or is added unchanged to) the residual stream.
RESIDUAL_OUTPUTS = ("mlp", "self_attn", "attn", "attention", *RESIDUAL_WRITERS)


def residual_write_map(model: Any, module_path: str, hook: str) -> torch.Tensor | None:
    """(d_model, width) float32 matrix W: a change v of the site's tensor changes the residual stream along W v;
    None when the site's tensor reaches the stream through no linear map named here."""
    network = torch_model(model)
    module = resolve_module(network, module_path)
    parent_path, _, leaf = module_path.rpartition(".")
    parent = network.get_submodule(parent_path) if parent_path else network
    hidden = int(network.config.hidden_size)
    identity = torch.eye(hidden)
    if isinstance(parent, torch.nn.ModuleList):  # a decoder layer: its input and output are the stream
        return identity
    if hook == "output" and leaf in RESIDUAL_OUTPUTS:
        return identity
    if hook == "input" and leaf in RESIDUAL_WRITERS and isinstance(module, torch.nn.Linear):
        return module.weight.detach().float().cpu()
    writer = getattr(parent, "down_proj", None)
    if hook == "output" and leaf == "act_fn" and isinstance(writer, torch.nn.Linear):
        return writer.weight.detach().float().cpu()
    return None


def no_output_direction(module_path: str, hook: str) -> SiteError:
    return SiteError(
        f"the site at {module_path} ({hook}) has no defined output direction: output-centric explainers and "
        "scorers need a site whose tensor reaches the residual stream through one linear map — a decoder layer "
        "(model.layers.N), an MLP's activation (model.layers.N.mlp.act_fn, output) or the input of its "
        "down_proj / attention's o_proj, or an SAE on one of these (docs/scorers/output-centric.md)"
    )


def final_norm(model: Any) -> torch.nn.Module | None:
    """The norm applied to the residual stream before the unembedding (Llama's `model.norm`, GPT-2's
    `transformer.ln_f`, NeoX's `final_layer_norm`); None when the model has none we know."""
    base = torch_model(model).base_model
    for name in ("norm", "ln_f", "final_layer_norm", "final_layernorm"):
        module = getattr(base, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def vocab_projection(model: Any, directions: torch.Tensor) -> torch.Tensor:
    """(n, vocab) float32 logits of each direction read as a final residual state: final norm, then the
    unembedding (VocabProj, Gur-Arieh et al. 2025; Arad et al. 2025's projection)."""
    network = torch_model(model)
    unembedding = network.get_output_embeddings()
    if unembedding is None:
        raise SiteError(f"{type(network).__name__} has no output embeddings to project feature directions onto")
    device = unembedding.weight.device
    states = directions.to(device=device, dtype=unembedding.weight.dtype)
    norm = final_norm(model)
    with torch.inference_mode():
        if norm is not None:
            states = norm(states)
        return unembedding(states).float().cpu()
