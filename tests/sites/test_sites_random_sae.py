"""The random-SAE control (site.sae.weights: random): shapes, firing rates matched per latent, seeds, the
activation cache, identities. Known answers on constructed inputs, then on the real subject model and corpus."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.activations import calibration_corpus, extract_activations
from harness.activations._forward import forward_batch
from harness.config import ActivationConfig, CorpusConfig, HarnessConfig, SAEConfig, SiteConfig, identity_payload
from harness.corpus import load_corpus
from harness.errors import SiteError
from harness.sites import RandomSAEWarning, SparseAutoencoder, build_site, firing_counts, random_sae
from harness.sites import _sae_random as random_module
from harness.stages import SharedStages

ACTIVATIONS = [("relu", None), ("jumprelu", None), ("topk", 6)]
DEAD = [0, 1, 2]  # latents the trained SAEs below never fire


def constructed_sae(activation: str, k: int | None, d_in: int = 16, d_sae: int = 40) -> SparseAutoencoder:
    generator = torch.Generator().manual_seed(11)
    W_enc = torch.randn(d_in, d_sae, generator=generator) * torch.linspace(0.2, 2.0, d_sae)
    b_enc = torch.randn(d_sae, generator=generator) - 0.5
    b_enc[DEAD] = -1e4
    return SparseAutoencoder(
        W_enc=W_enc, b_enc=b_enc, W_dec=torch.randn(d_sae, d_in, generator=generator) * 0.3,
        b_dec=torch.full((d_in,), 0.2), threshold=torch.rand(d_sae, generator=generator) * 0.8,
        activation=activation, k=k, apply_b_dec_to_input=True, source="constructed", content_hash="trained-hash",
    )  # fmt: skip


@pytest.fixture(scope="module")
def inputs():
    """2000 distinct rows with correlated channels and an offset, like a residual stream."""
    generator = torch.Generator().manual_seed(5)
    return torch.randn(2000, 16, generator=generator) @ torch.randn(16, 16, generator=generator) + 0.7


@pytest.mark.parametrize(("activation", "k"), ACTIVATIONS)
def test_random_sae_has_the_trained_shapes_settings_and_norms(inputs, activation, k):
    trained = constructed_sae(activation, k)
    random = random_sae(trained, inputs, seed=0, calibration_identity="corpus")

    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
        assert getattr(random, name).shape == getattr(trained, name).shape, name
    assert (random.activation, random.k, random.apply_b_dec_to_input) == (activation, k, True)
    torch.testing.assert_close(random.b_dec, trained.b_dec)
    torch.testing.assert_close(random.threshold, trained.threshold)
    torch.testing.assert_close(random.W_enc.norm(dim=0), trained.W_enc.norm(dim=0))
    torch.testing.assert_close(random.W_dec.norm(dim=1), trained.W_dec.norm(dim=1))
    # tied: each decoder row points along its encoder column
    cosine = torch.nn.functional.cosine_similarity(random.W_enc.T, random.W_dec, dim=1)
    torch.testing.assert_close(cosine, torch.ones_like(cosine))


# Share of latents whose count may differ (by one position): elementwise activations only where two inputs' values
# lie within float rounding of each other at the cut (none here), TopK where near-tied latents swap a position.
OFF_BY_ONE = {"relu": 0.05, "jumprelu": 0.05, "topk": 0.2}


@pytest.mark.parametrize(("activation", "k"), ACTIVATIONS)
def test_random_latents_fire_as_often_as_the_trained_ones(inputs, activation, k):
    trained = constructed_sae(activation, k)
    random = random_sae(trained, inputs, seed=0, calibration_identity="corpus")

    target, achieved = firing_counts(trained, inputs), firing_counts(random, inputs)
    assert int((target > 0).sum()) >= 30 and int(target.max()) < len(inputs)  # rare and common latents
    assert int((achieved - target).abs().max()) <= 1
    assert float((achieved != target).float().mean()) <= OFF_BY_ONE[activation]
    assert target[DEAD].tolist() == [0, 0, 0] and not achieved[target == 0].any()  # dead ones stay dead
    # the trained encoder is not what fires: the directions and their firing positions differ
    trained_fires, random_fires = trained.encode(inputs) > 0, random.encode(inputs) > 0
    assert float((trained_fires != random_fires).float().mean()) > 0.1


def test_firing_counts_count_positive_latents_after_the_activation():
    sae = SparseAutoencoder(
        W_enc=torch.eye(3), b_enc=torch.tensor([0.0, -1.0, 0.0]), W_dec=torch.eye(3), b_dec=torch.zeros(3),
        threshold=torch.tensor([0.0, 0.0, 2.5]), activation="jumprelu", k=None, apply_b_dec_to_input=False,
        source="eye", content_hash="eye",
    )  # fmt: skip
    rows = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, 1.5, 2.6]])
    # latent 0: > 0 on row 0; latent 1: > 1 on rows 0 and 2; latent 2: > 2.5 on rows 0 and 2
    assert firing_counts(sae, rows).tolist() == [1, 2, 2]


@pytest.mark.parametrize(("activation", "k"), ACTIVATIONS)
def test_random_sae_is_deterministic_per_seed_and_differs_across_seeds(inputs, activation, k):
    trained = constructed_sae(activation, k)
    first = random_sae(trained, inputs, seed=3, calibration_identity="corpus")
    again = random_sae(trained, inputs, seed=3, calibration_identity="corpus")
    other = random_sae(trained, inputs, seed=4, calibration_identity="corpus")

    for name in ("W_enc", "b_enc", "W_dec"):
        torch.testing.assert_close(getattr(first, name), getattr(again, name), rtol=0, atol=0)
        assert not torch.allclose(getattr(first, name), getattr(other, name)), name
        assert not torch.allclose(getattr(first, name), getattr(trained, name)), name
    assert first.identity == again.identity
    assert len({trained.identity, first.identity, other.identity}) == 3
    other_corpus = random_sae(trained, inputs[:1000], seed=3, calibration_identity="another corpus")
    assert other_corpus.content_hash != first.content_hash


def test_a_topk_calibration_that_runs_out_of_rounds_says_by_how_much(inputs, monkeypatch):
    monkeypatch.setattr(random_module, "TOPK_ROUNDS", 1)
    with pytest.warns(RandomSAEWarning, match=r"after 1 calibration rounds .* differs .* by up to \d+ of 2000"):
        random_sae(constructed_sae("topk", 6), inputs, seed=0, calibration_identity="corpus")


def test_no_positions_to_calibrate_on_is_an_error():
    with pytest.raises(SiteError, match="no corpus positions to match firing rates on.*skip_first_positions"):
        random_sae(constructed_sae("relu", None), torch.zeros(0, 16), seed=0, calibration_identity="corpus")


def test_the_default_weights_leave_the_site_identity_unchanged():
    plain = SiteConfig(kind="sae", module="model.layers.3", sae=SAEConfig(path="sae"))
    explicit = SiteConfig(
        kind="sae", module="model.layers.3", sae=SAEConfig(path="sae", weights="trained", random_seed=0)
    )
    random = SiteConfig(kind="sae", module="model.layers.3", sae=SAEConfig(path="sae", weights="random"))
    seeded = SiteConfig(kind="sae", module="model.layers.3", sae=SAEConfig(path="sae", weights="random", random_seed=1))

    assert identity_payload(explicit) == identity_payload(plain)
    assert "weights" not in identity_payload(plain)["sae"] and "random_seed" not in identity_payload(plain)["sae"]
    assert len({plain.fingerprint(), random.fingerprint(), seeded.fingerprint()}) == 3
    assert (plain.reads_corpus, random.reads_corpus, SiteConfig().reads_corpus) == (False, True, False)
    assert HarnessConfig(site=explicit).fingerprint() == HarnessConfig(site=plain).fingerprint()


# --- on the real subject model ---------------------------------------------------------------------------

FIRST_WORDS = ["Alpha", "Beyond", "Cats", "During", "Every", "Fresh", "Given", "However", "If", "Just", "Keep", "Later"]


@pytest.fixture(scope="module")
def distinct_corpus(tmp_path_factory):
    """12 samples whose first words differ, so that no two corpus positions share their context (no ties)."""
    path = tmp_path_factory.mktemp("corpus") / "texts.jsonl"
    lines = [
        {"text": f"{word} the function returns a list of {i} values, sorted by key."}
        for i, word in enumerate(FIRST_WORDS)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return load_corpus(CorpusConfig(source=str(path), num_samples=None, shuffle=False))


@pytest.fixture(scope="module")
def sae_folders(tmp_path_factory, write_saelens, random_sae_weights):
    root = tmp_path_factory.mktemp("saes")
    folders = {}
    for activation, k in ACTIVATIONS:
        weights = random_sae_weights(576, 48, seed=3, threshold=activation == "jumprelu")
        weights["b_enc"][DEAD] = -1e4
        settings = {"architecture": activation} if activation != "relu" else {"activation_fn": "relu"}
        folders[activation] = write_saelens(root / activation, weights, k=k, hook_name="blocks.3.hook_resid_post",
                                            **settings)  # fmt: skip
    return folders


def site_config(folder, **sae) -> SiteConfig:
    return SiteConfig(kind="sae", module="model.layers.3", sae=SAEConfig(path=str(folder), **sae))


def engine_firing_counts(subject_model, site, corpus, config) -> np.ndarray:
    """How many valid corpus positions each latent is > 0 at, read through the activation engine's batches."""
    features = torch.arange(site.num_features)
    texts = corpus["text"].tolist()
    counts = np.zeros(site.num_features, dtype=np.int64)
    for start in range(0, len(texts), config.batch_size):
        batch = forward_batch(subject_model, site, texts[start : start + config.batch_size], features, config)
        counts += (batch.token_acts > 0).sum(dim=(0, 1)).numpy()  # zero at ignored positions
    return counts


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_random_site_fires_as_often_as_the_trained_site_on_the_corpus(
    subject_model, distinct_corpus, sae_folders, activation
):
    config = ActivationConfig(batch_size=5, max_length=24, skip_first_positions=1)
    corpus = calibration_corpus(subject_model, distinct_corpus, config, progress=False)
    trained = build_site(site_config(sae_folders[activation]), subject_model)
    random = build_site(site_config(sae_folders[activation], weights="random"), subject_model, corpus)

    assert random.sae.W_enc.shape == trained.sae.W_enc.shape == (576, 48)
    assert random.sae.identity != trained.sae.identity and random.identity != trained.identity
    target = engine_firing_counts(subject_model, trained, distinct_corpus, config)
    achieved = engine_firing_counts(subject_model, random, distinct_corpus, config)
    positions = corpus.inputs(trained).shape[0]
    assert ((0 < target) & (target < positions)).sum() >= 20  # latents that fire on some positions, not all
    assert np.abs(achieved - target).max() <= 1
    assert (achieved != target).mean() <= OFF_BY_ONE[activation]
    assert target[DEAD].tolist() == [0, 0, 0] and not achieved[target == 0].any()  # dead ones stay dead


@pytest.mark.slow
def test_the_activation_cache_keeps_trained_and_random_saes_apart(
    subject_model, distinct_corpus, sae_folders, tmp_path
):
    config = ActivationConfig(batch_size=4, max_length=24, top_k=3, cache_dir=str(tmp_path / "cache"))
    corpus = calibration_corpus(subject_model, distinct_corpus, config, progress=False)
    folder = sae_folders["relu"]
    sites = {
        "trained": build_site(site_config(folder), subject_model),
        "seed 0": build_site(site_config(folder, weights="random"), subject_model, corpus),
        "seed 0 again": build_site(site_config(folder, weights="random"), subject_model, corpus),
        "seed 1": build_site(site_config(folder, weights="random", random_seed=1), subject_model, corpus),
    }
    results = {
        name: extract_activations(subject_model, site, distinct_corpus, config, progress=False)
        for name, site in sites.items()
    }

    assert len({result.cache_key for result in results.values()}) == 3
    assert results["seed 0 again"].cache_key == results["seed 0"].cache_key
    assert len(list((tmp_path / "cache" / "activations").iterdir())) == 3
    assert not np.allclose(results["seed 0"].per_sample, results["trained"].per_sample)
    assert not np.allclose(results["seed 0"].per_sample, results["seed 1"].per_sample)
    np.testing.assert_array_equal(results["seed 0 again"].per_sample, results["seed 0"].per_sample)


@pytest.mark.slow
def test_a_random_sae_is_built_only_with_a_corpus_with_positions(subject_model, distinct_corpus, sae_folders):
    config = site_config(sae_folders["relu"], weights="random")
    with pytest.raises(SiteError, match="calibrated on the run's corpus, but the site was built without it"):
        build_site(config, subject_model)
    everything_skipped = ActivationConfig(max_length=24, skip_first_positions=24)
    corpus = calibration_corpus(subject_model, distinct_corpus, everything_skipped, progress=False)
    with pytest.raises(SiteError, match="no corpus positions to match firing rates on"):
        build_site(config, subject_model, corpus)


@pytest.mark.slow
def test_shared_stages_calibrate_the_random_sae_on_the_configs_corpus(distinct_corpus, sae_folders, tmp_path):
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps({"text": text}) + "\n" for text in distinct_corpus["text"]), "utf-8")
    corpus = CorpusConfig(source=str(corpus_file), num_samples=None, shuffle=False)
    activations = ActivationConfig(batch_size=6, max_length=24, cache_dir=str(tmp_path / "cache"))
    random = HarnessConfig(
        corpus=corpus, activations=activations, site=site_config(sae_folders["relu"], weights="random")
    )
    shorter = replace_corpus(random, max_chars=30)

    shared = SharedStages(progress=False)
    site = shared.site(random)
    assert shared.site(random) is site  # once per process
    more_examples = random.model_copy(update={"activations": activations.model_copy(update={"top_k": 7})})
    assert shared.site(more_examples) is site  # the same positions read: the same calibration
    direct = build_site(
        random.site, shared.model(random), calibration_corpus(shared.model(random), shared.corpus(random), activations)
    )
    torch.testing.assert_close(site.sae.b_enc, direct.sae.b_enc)
    assert site.sae.content_hash == direct.sae.content_hash
    # another corpus calibrates another random SAE
    assert shared.site(shorter).sae.content_hash != site.sae.content_hash


def replace_corpus(config: HarnessConfig, **corpus) -> HarnessConfig:
    return config.model_copy(update={"corpus": config.corpus.model_copy(update=corpus)})


@pytest.mark.slow
def test_the_activations_command_runs_the_random_sae_after_its_calibration_pass(sae_folders, tmp_path):
    config = {
        "corpus": {"num_samples": 8, "max_chars": 80},
        "site": {
            "kind": "sae",
            "module": "model.layers.3",
            "sae": {"path": str(sae_folders["topk"]), "weights": "random"},
        },
        "activations": {"batch_size": 4, "max_length": 16, "cache_dir": str(tmp_path / "cache")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    result = subprocess.run([sys.executable, "-m", "harness", "activations", str(path), "--features", "2"],
                            capture_output=True, text=True, timeout=300)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "calibration pass model.layers.3" in result.stderr
    assert "feature" in result.stdout.lower()
