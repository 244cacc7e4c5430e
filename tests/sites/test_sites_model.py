"""Sites on the real subject model: module paths, feature ranges, SAE fit, and steering."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from harness.config import FeatureRange, SAEConfig, SiteConfig
from harness.errors import ConfigError, SiteError
from harness.sites import SITES, build_site

pytestmark = pytest.mark.slow

PROMPTS = ["The quick brown fox jumps over", "def add(a, b):\n    return"]


@pytest.fixture(scope="module")
def inputs(subject_model):
    return subject_model.tokenizer(PROMPTS, padding=True, return_tensors="pt")


def logits(model, inputs):
    with torch.inference_mode():
        return model.model(**inputs).logits


def module_tensor(model, site, inputs):
    """What the site's module reads or writes, from a full (not early-exited) forward."""
    return site.run_to_site(model, dict(inputs), early_exit=False)


@pytest.fixture(scope="module")
def sae_site(subject_model, tmp_path_factory, write_saelens, random_sae_weights):
    folder = write_saelens(tmp_path_factory.mktemp("sae") / "l3", random_sae_weights(576, 48, seed=3), activation_fn="relu",
                           hook_name="blocks.3.hook_resid_post")  # fmt: skip
    return build_site(SiteConfig(kind="sae", module="model.layers.3", sae=SAEConfig(path=str(folder))), subject_model)


def test_registry_knows_both_kinds():
    assert SITES.names() == ["neuron", "sae"]
    with pytest.raises(ConfigError, match="Did you mean 'neuron'"):
        SITES.get("neurons")


@pytest.mark.parametrize(
    ("module", "hook", "width"),
    [
        ("model.layers.3.mlp.act_fn", "output", 1536),
        ("model.layers.3.mlp.down_proj", "input", 1536),
        ("model.layers.3", "output", 576),
    ],
)
def test_neuron_site_width(subject_model, module, hook, width):
    site = build_site(SiteConfig(module=module, hook=hook), subject_model)
    assert (site.kind, site.module_path, site.num_features) == ("neuron", module, width)
    np.testing.assert_array_equal(site.resolve_features("all"), np.arange(width))


def test_down_proj_input_is_the_gated_neuron(subject_model, inputs):
    neuron = build_site(SiteConfig(module="model.layers.3.mlp.down_proj", hook="input"), subject_model)
    gate = build_site(SiteConfig(module="model.layers.3.mlp.act_fn"), subject_model)
    up = build_site(SiteConfig(module="model.layers.3.mlp.up_proj"), subject_model)
    expected = module_tensor(subject_model, gate, inputs) * module_tensor(subject_model, up, inputs)
    torch.testing.assert_close(module_tensor(subject_model, neuron, inputs), expected)


def test_early_exit_reads_the_same_tensor(subject_model, inputs):
    site = build_site(SiteConfig(module="model.layers.5.mlp.act_fn"), subject_model)
    torch.testing.assert_close(
        site.run_to_site(subject_model, dict(inputs)), module_tensor(subject_model, site, inputs)
    )


def test_wrong_module_path_lists_near_matches(subject_model):
    with pytest.raises(
        SiteError, match=r"'model\.layers\.3\.mlp\.act_fun' does not exist.*model\.layers\.3\.mlp\.act_fn"
    ):
        build_site(SiteConfig(module="model.layers.3.mlp.act_fun"), subject_model)
    with pytest.raises(SiteError, match=r"model\.layers\.3\.mlp\.down_proj"):
        build_site(SiteConfig(module="model.layers.3.mlp.neurons"), subject_model)


def test_feature_out_of_range_is_a_clear_error(subject_model):
    site = build_site(SiteConfig(module="model.layers.3.mlp.act_fn"), subject_model)
    with pytest.raises(SiteError, match=r"\[1536, 2000\] are out of range .* 1536 features \(0\.\.1535\)"):
        site.resolve_features([3, 1536, 2000])
    with pytest.raises(SiteError, match="out of range"):
        build_site(
            SiteConfig(module="model.layers.3.mlp.act_fn", features=FeatureRange(start=1500, stop=1600)), subject_model
        )
    with pytest.raises(SiteError, match="unique"):
        site.resolve_features(np.array([4, 4]))
    np.testing.assert_array_equal(site.resolve_features([9, 2, 5]), [9, 2, 5])


def test_sae_shape_mismatch_is_a_clear_error(subject_model, tmp_path, write_saelens, random_sae_weights):
    folder = write_saelens(
        tmp_path / "sae", random_sae_weights(576, 32), activation_fn="relu", hook_name="blocks.3.hook_resid_post"
    )
    with pytest.raises(
        SiteError,
        match=r"d_in=576, but the output of model\.layers\.3\.mlp\.act_fn has 1536 .*blocks\.3\.hook_resid_post",
    ):
        build_site(
            SiteConfig(kind="sae", module="model.layers.3.mlp.act_fn", sae=SAEConfig(path=str(folder))), subject_model
        )


def test_sae_site_encodes_the_module_output(subject_model, sae_site, inputs):
    residual = module_tensor(subject_model, sae_site, inputs)
    with torch.inference_mode():
        hidden = subject_model.model(**inputs, output_hidden_states=True).hidden_states[4]
    torch.testing.assert_close(residual, hidden)
    weights = sae_site.sae
    expected = torch.relu(hidden @ weights.W_enc + weights.b_enc)[..., [7, 1]]
    torch.testing.assert_close(sae_site.encode(residual, torch.tensor([7, 1])), expected)


def test_neuron_factor_one_leaves_logits_unchanged(subject_model, inputs):
    site = build_site(SiteConfig(module="model.layers.3.mlp.act_fn"), subject_model)
    before = logits(subject_model, inputs)
    with site.steer(subject_model, feature=11, factor=1.0):
        assert torch.equal(logits(subject_model, inputs), before)
    with site.steer(subject_model, feature=11, factor=5.0):
        assert not torch.allclose(logits(subject_model, inputs), before)
    assert torch.equal(logits(subject_model, inputs), before)  # the hook is gone


def test_unsteered_sae_leaves_logits_unchanged(subject_model, sae_site, inputs):
    before = logits(subject_model, inputs)
    with sae_site.steer(subject_model, feature=7, factor=1.0, reference=None):
        assert torch.equal(logits(subject_model, inputs), before)


@pytest.mark.parametrize(
    ("module", "hook"), [("model.layers.3.mlp.act_fn", "output"), ("model.layers.3.mlp.down_proj", "input")]
)
def test_neuron_steering_multiplies_the_channel_at_every_position(subject_model, inputs, module, hook):
    site = build_site(SiteConfig(module=module, hook=hook), subject_model)
    original = module_tensor(subject_model, site, inputs)
    with site.steer(subject_model, feature=40, factor=-10.0):
        steered = module_tensor(subject_model, site, inputs)
    expected = original.clone()
    expected[..., 40] *= -10.0
    torch.testing.assert_close(steered, expected)


def test_sae_steering_writes_back_the_decoded_change(subject_model, sae_site, inputs):
    original = module_tensor(subject_model, sae_site, inputs)
    with sae_site.steer(subject_model, feature=7, factor=10.0, reference=2.5):
        steered = module_tensor(subject_model, sae_site, inputs)
    current = sae_site.encode(original, torch.tensor([7]))
    expected = original + (10.0 * 2.5 - current) * sae_site.sae.W_dec[7]
    torch.testing.assert_close(steered, expected)
    assert sae_site.steering_uses_reference


def test_steering_applies_to_every_generated_token(subject_model, inputs):
    site = build_site(SiteConfig(module="model.layers.3.mlp.act_fn"), subject_model)
    seen = []
    with site.steer(subject_model, feature=40, factor=0.0), site.intercept(subject_model, seen.append):
        subject_model.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert len(seen) == 4  # the prompt, then one forward per new token
    assert all(torch.count_nonzero(tensor[..., 40]) == 0 for tensor in seen)
    assert all(torch.count_nonzero(tensor[..., 41]) > 0 for tensor in seen)


@pytest.mark.parametrize(
    ("module", "hook"), [("model.layers.3.mlp.act_fn", "output"), ("model.layers.3.mlp.down_proj", "input")]
)
def test_a_hook_changes_only_the_forwards_of_the_thread_that_set_it(subject_model, inputs, module, hook):
    """The local LLM can be the subject model: its passes on another thread must not be steered or cut."""
    site = build_site(SiteConfig(module=module, hook=hook), subject_model)
    before = logits(subject_model, inputs)
    with site.steer(subject_model, feature=40, factor=-10.0), ThreadPoolExecutor(1) as other:
        elsewhere = other.submit(logits, subject_model, inputs).result()
        here = logits(subject_model, inputs)
        read_elsewhere = other.submit(site.run_to_site, subject_model, inputs).result()
    assert torch.equal(elsewhere, before) and not torch.allclose(here, before)
    torch.testing.assert_close(read_elsewhere, module_tensor(subject_model, site, inputs))
