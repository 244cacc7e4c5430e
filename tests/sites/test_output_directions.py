"""Each feature's residual-stream direction (FeatureSite.output_directions), checked against what the model
does: a small push of the feature moves the residual stream after its layer along that direction."""

from __future__ import annotations

import pytest
import torch

from harness.config import SAEConfig
from harness.errors import SiteError
from harness.sites import NeuronSite, SAESite, load_sae, vocab_projection

LAYER = 3


def _residual_change(model, site, feature: int, delta: float) -> torch.Tensor:
    """The change of decoder layer LAYER's output, per token, when `feature` of `site` is pushed by `delta`."""
    network = model.model
    inputs = model.tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    layer = NeuronSite(model, f"model.layers.{LAYER}", "output")

    def push(tensor: torch.Tensor) -> torch.Tensor:
        return tensor + delta * site.feature_vectors([feature]).to(tensor)[0]

    clean = layer.run_to_site(model, dict(inputs), early_exit=True)
    with site.intercept(network, push):
        pushed = layer.run_to_site(model, dict(inputs), early_exit=True)
    return (pushed - clean)[0].float()


@pytest.mark.parametrize(("module", "hook"), [(f"model.layers.{LAYER}.mlp.act_fn", "output"),
                                              (f"model.layers.{LAYER}.mlp.down_proj", "input")])  # fmt: skip
def test_an_mlp_neuron_writes_along_its_down_projection_column(subject_model, module, hook):
    site = NeuronSite(subject_model, module, hook)
    [direction] = site.output_directions(subject_model, [5])
    column = subject_model.model.get_submodule(f"model.layers.{LAYER}.mlp.down_proj").weight[:, 5].float()
    assert torch.allclose(direction, column)
    change = _residual_change(subject_model, site, 5, 0.5)
    cosines = torch.nn.functional.cosine_similarity(change, direction.expand_as(change), dim=-1)
    # act_fn's output is multiplied by up_proj's per token: the push scales by it, signs included
    assert (cosines.abs() > 0.99).all(), cosines


def test_an_sae_latent_on_the_residual_stream_writes_its_decoder_row(
    subject_model, tmp_path, write_saelens, random_sae_weights
):
    folder = write_saelens(tmp_path / "sae", random_sae_weights(576, 32, seed=3))
    site = SAESite(subject_model, f"model.layers.{LAYER}", "output", load_sae(SAEConfig(path=str(folder))))
    directions = site.output_directions(subject_model, [0, 7])
    assert torch.allclose(directions, site.sae.W_dec[[0, 7]].float())
    change = _residual_change(subject_model, site, 7, 2.0)
    assert torch.allclose(change, 2.0 * directions[1].expand_as(change), atol=1e-3)


@pytest.mark.parametrize("module", [f"model.layers.{LAYER}.mlp.up_proj", f"model.layers.{LAYER}.self_attn.q_proj"])
def test_a_site_with_no_output_direction_is_a_clear_error(subject_model, module):
    site = NeuronSite(subject_model, module, "output")
    with pytest.raises(SiteError, match=r"has no defined output direction.*mlp\.act_fn"):
        site.output_directions(subject_model, [0])


def test_the_vocab_projection_of_the_last_residual_state_is_the_models_logits(subject_model):
    """Final norm, then the unembedding: what the model itself does to its last residual state."""
    inputs = subject_model.tokenizer("def main():\n    return", return_tensors="pt")
    last_layer = len(subject_model.model.model.layers) - 1
    residual = NeuronSite(subject_model, f"model.layers.{last_layer}", "output").run_to_site(
        subject_model, dict(inputs), early_exit=False
    )[0]
    with torch.inference_mode():
        logits = subject_model.model(**inputs).logits[0].float()
    assert torch.allclose(vocab_projection(subject_model, residual), logits, atol=1e-3, rtol=1e-4)


def test_a_direction_built_to_promote_one_token_projects_it_first(subject_model):
    unembedding = subject_model.model.get_output_embeddings().weight.detach().float()
    token = subject_model.tokenizer.encode(" banana")[0]
    direction = unembedding[token] - unembedding.mean(dim=0)  # a discriminator: raw rows share a direction
    logits = vocab_projection(subject_model, direction[None])[0]
    assert int(logits.argmax()) == token


def test_a_clamped_neuron_holds_its_value_at_every_position(subject_model):
    site = NeuronSite(subject_model, f"model.layers.{LAYER}.mlp.act_fn", "output")
    inputs = dict(subject_model.tokenizer("clamp me here", return_tensors="pt"))
    free = site.run_to_site(subject_model, inputs)
    with site.clamp(subject_model.model, 5, 3.0):
        held = site.run_to_site(subject_model, inputs)
    assert (held[..., 5] == 3.0).all() and not (free[..., 5] == 3.0).any()
    assert torch.equal(held[..., 6:], free[..., 6:])
