"""The output-centric scorers (docs/scorers/output-centric.md): their metric functions against the papers'
formulae on constructed inputs, and known answers on SmolLM2 with an SAE whose latents promote one token each.

The SAE (SAELens files in tmp_path) reads decoder layer LAYER's output, the residual stream. Latents 0-2 write
a token's discriminator direction: the unembedding row of " cat" (" dog", " music") minus the mean row, so the
direction every row shares is taken out, whitened by the unembedding's Gram matrix and divided by the final
norm's weight, so that the final norm and the unembedding read it back as that token above all others.
Latents 3-4 write random unit directions, latent 5 nothing. The rater is the real loopback server with the
harness's scripted responder (FadeResponder.output_detection), which picks the set in which the
description's words occur most often, as a judge reading for the description would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import save_file
from scorer_records import example

from harness.config import LLMConfig, SAEConfig, ScorersConfig, SubjectModelConfig, parse_config
from harness.errors import ConfigError
from harness.evaluate.scorers import SCORERS, SubjectSite, run_scorers
from harness.evaluate.scorers._output_detection import (
    OutputDetectionConfig,
    detection_messages,
    draw_trials,
    read_set,
    set_text,
)
from harness.evaluate.scorers._output_metrics import (
    mean_kl,
    next_bracket,
    vocab_input_score,
    vocab_output_score,
    within,
)
from harness.evaluate.scorers._steering import ModelCounts
from harness.evaluate.scorers._vocab_scores import projection_tokens
from harness.evaluate.scorers.prompts import system_prompt
from harness.explain import FeatureRecord
from harness.llm import LLMClient
from harness.raters import Capability, Rater
from harness.score_names import Reason
from harness.sites import NeuronSite, SAESite, load_sae
from harness.stages import SharedStages, score_with_other_scorers
from harness.testing.loopback import LoopbackServer
from harness.testing.responders import FadeResponder

LAYER = 20
WORDS = [" cat", " dog", " music"]
DESCRIPTIONS = {0: 'the words "cat" and "cats"', 1: 'the words "dog" and "dogs"', 2: 'the word "music"'}
RANDOM_DESCRIPTIONS = {3: 'the word "lantern"', 4: 'the word "glacier"'}
CHANCE = 1 / 3


# --- the papers' formulae, written as their code computes them --------------------------------------------


def arad_output_score(probs: torch.Tensor, tokens: list[int]) -> float:
    """src/output_score.py, get_output_score, after the forward pass."""
    vocab_size = probs.shape[0]
    tokens_argsort = torch.argsort(probs, dim=0, descending=True)
    ranks = [(tokens_argsort == token).nonzero(as_tuple=True)[0].item() for token in tokens]
    return (1 - min(ranks) / vocab_size) * torch.max(probs[tokens]).item()


def gur_arieh_kl(clean: torch.Tensor, hooked: torch.Tensor, mask: torch.Tensor, eps: float = 1e-10) -> float:
    """The notebook's kl_div and get_kl_div (padding rows set to 0, then the mean of each row's non-zero KLs)."""
    clean, hooked = clean.clone(), hooked.clone()
    clean[~mask] = 0
    hooked[~mask] = 0
    p, q = clean.clamp(min=eps), hooked.clamp(min=eps)
    kl = torch.sum(p * (torch.log(p) - torch.log(q)), dim=-1)
    return float(np.mean([row[row != 0].mean().item() for row in kl]))


def test_output_score_is_arads_formula():
    rng = np.random.default_rng(0)
    for trial in range(20):
        logits = rng.normal(size=500) * 3
        probs = np.exp(logits) / np.exp(logits).sum()
        tokens = rng.choice(500, size=20, replace=False).tolist()
        expected = arad_output_score(torch.tensor(probs), tokens)
        assert vocab_output_score(probs, tokens) == pytest.approx(expected, rel=1e-12), trial


def test_output_score_known_values():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    assert vocab_output_score(probs, [1]) == pytest.approx(0.3 * (1 - 1 / 4))
    assert vocab_output_score(probs, [3, 0]) == pytest.approx(0.5 * 1.0)
    assert vocab_output_score(probs, [3, 2]) == pytest.approx(0.15 * (1 - 2 / 4))


def test_input_score_is_the_share_of_peaks_among_the_projection_tokens():
    assert vocab_input_score([5, 5, 7, 9], [5, 9, 11]) == 0.75
    assert vocab_input_score([1, 2], [3]) == 0.0
    with pytest.raises(ValueError):
        vocab_input_score([], [3])


def test_kl_is_gur_ariehs_on_padded_prompts():
    rng = np.random.default_rng(1)
    clean = rng.dirichlet(np.ones(30), size=(3, 5))
    steered = rng.dirichlet(np.ones(30), size=(3, 5))
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=bool)
    expected = gur_arieh_kl(torch.tensor(clean), torch.tensor(steered), torch.tensor(mask))
    assert mean_kl(clean, steered, mask) == pytest.approx(expected, rel=1e-9)
    assert mean_kl(clean, clean, mask) == pytest.approx(0.0, abs=1e-12)


def test_the_bisection_ends_within_the_reference_tolerance():
    """A KL that grows with the clamp, as the reference's binary search assumes: it ends in [target, target + 0.1]."""

    def kl_of(value: float) -> float:
        return (value / 40.0) ** 2

    low, high, value = 0.0, 1000.0, None
    for _ in range(40):
        value = (low + high) / 2
        if within(kl_of(value), 0.5, 0.1):
            break
        low, high = next_bracket(low, high, value, kl_of(value), 0.5)
    assert value is not None and within(kl_of(value), 0.5, 0.1)


def test_answers_and_sets_as_the_rater_reads_them():
    assert read_set('{"set": 2}') == 2
    assert read_set("The second set repeats 'cat' the most.\n3") == 3  # the reference's answer
    assert read_set('{"set": 4}') is None
    assert read_set(None) is None
    text = set_text(
        ["I think", "We"], [0.25, -0.5], {(0.25, 0): "a\nb", (0.25, 1): "c", (-0.5, 0): "d", (-0.5, 1): "e"}
    )
    assert text.splitlines() == [
        "<+0.25>'I think': 'a\\nb'",
        "<+0.25>'We': 'c'",
        "<-0.5>'I think': 'd'",
        "<-0.5>'We': 'e'",
    ]
    messages = detection_messages(system_prompt("output-detection"), 'the word "cat"', ["x", "cat cat", "y Cat"])
    assert json.loads(FadeResponder()(messages)) == {"set": 2}


def test_trials_show_the_feature_once_among_two_others_and_do_not_depend_on_order():
    settings = OutputDetectionConfig(num_trials=100)
    trials = draw_trials(7, [3, 7, 9, 11], settings)
    assert trials == draw_trials(7, [11, 9, 7, 3], settings)
    positions = [position for _, position in trials]
    for shown, position in trials:
        assert len(shown) == 3 and shown[position] == 7 and shown.count(7) == 1
    assert set(positions) == {0, 1, 2} and abs(np.mean([p == 0 for p in positions]) - CHANCE) < 0.1


# --- known answers on SmolLM2 -------------------------------------------------------------------------------


def _token_sae(model, folder):
    """SAELens files of the SAE the module docstring describes."""
    unembedding = model.model.get_output_embeddings().weight.detach().double()
    gamma = model.model.model.norm.weight.detach().double()
    d_in = unembedding.shape[1]
    decoder = np.zeros((6, d_in), dtype=np.float32)
    gram = unembedding.T @ unembedding
    for latent, word in enumerate(WORDS):
        [token] = model.tokenizer.encode(word, add_special_tokens=False)
        direction = torch.linalg.solve(gram, unembedding[token] - unembedding.mean(0)) / gamma
        decoder[latent] = (direction / direction.norm()).numpy()
    rng = np.random.default_rng(0)
    for latent in (3, 4):
        direction = rng.normal(size=d_in)
        decoder[latent] = direction / np.linalg.norm(direction)
    weights = {
        "W_enc": (3 * rng.normal(size=(d_in, 6)) / np.sqrt(d_in)).astype(np.float32),
        "b_enc": np.zeros(6, dtype=np.float32),
        "W_dec": decoder,
        "b_dec": np.zeros(d_in, dtype=np.float32),
    }
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps({"d_in": d_in, "d_sae": 6}), encoding="utf-8")
    save_file(weights, str(folder / "sae_weights.safetensors"))
    return folder


@pytest.fixture(scope="module")
def token_sae(tmp_path_factory):
    from harness.model import load_subject_model

    return _token_sae(load_subject_model(SubjectModelConfig()), tmp_path_factory.mktemp("sae") / "tokens")


@pytest.fixture(scope="module")
def subject(token_sae) -> SubjectSite:
    from harness.model import load_subject_model

    model = load_subject_model(SubjectModelConfig())
    return SubjectSite(
        model, SAESite(model, f"model.layers.{LAYER}", "output", load_sae(SAEConfig(path=str(token_sae))))
    )


@pytest.fixture
def judge(tmp_path) -> Iterator[LLMClient]:
    with LoopbackServer(FadeResponder()) as server:
        settings = LLMConfig(model="openai/scripted", api_base=server.url, cache_path=str(tmp_path / "cache.sqlite"))
        client = LLMClient(settings, progress=False)
        yield client
        client.close()


def bare(feature: int) -> FeatureRecord:
    return FeatureRecord(feature=feature, top_examples=())


def scored(name: str, subject, features, descriptions=None, client=None, **settings):
    scorer = SCORERS.get(name)()
    scorer.subject = subject
    config = ScorersConfig(settings={name: settings} if settings else {})
    described = descriptions if descriptions is not None else dict.fromkeys(features, None)
    table = scorer.score([bare(feature) for feature in features], described, client, config, progress=False)
    return table.set_index("feature"), scorer


@pytest.mark.slow
def test_a_token_latent_projects_onto_its_token(subject):
    tokens = projection_tokens(subject, [0, 1, 2], 20)
    for latent, word in enumerate(WORDS):
        [token] = subject.model.tokenizer.encode(word, add_special_tokens=False)
        assert tokens[latent][0] == token


@pytest.mark.slow
def test_output_score_is_high_for_token_latents_and_low_for_random_ones(subject):
    table, scorer = scored("output-score", subject, range(5))
    token_latents, random_latents = table.loc[[0, 1, 2], "output-score"], table.loc[[3, 4], "output-score"]
    assert (token_latents > 0.5).all(), table
    assert (random_latents < 0.2).all() and token_latents.min() > random_latents.max(), table
    assert scorer.counts.forwards == 2  # the clean run to the site, and one batch of every feature


@pytest.mark.slow
def test_input_score_counts_the_peaks_on_projection_tokens(subject):
    cat = [example(i, f"A{word} sat there.", word.strip(), 3.0) for i, word in enumerate([" cat"] * 7 + [" mat"] * 3)]
    [mat] = subject.model.tokenizer.encode(" mat", add_special_tokens=False)
    assert mat not in projection_tokens(subject, [0], 20)[0]
    scorer = SCORERS.get("input-score")()
    scorer.subject = subject
    table = scorer.score(
        [FeatureRecord(0, tuple(cat)), FeatureRecord(1, tuple(cat[:5]))], {0: None, 1: None}, None, ScorersConfig()
    ).set_index("feature")
    assert table.loc[0, "input-score"] == pytest.approx(0.7)
    assert table.loc[0, "input-score_examples"] == 10
    assert table.loc[1, "input-score_reason"] == Reason.TOO_FEW_ACTIVATING_EXAMPLES


@pytest.mark.slow
def test_output_detection_known_answers(subject, judge):
    """True descriptions are picked well above chance; another latent's description, or a random latent's, is
    not: a judge looking for "cat" in the music latent's trials picks the cat latent's set when it is shown,
    else any of the three."""
    descriptions = {0: DESCRIPTIONS[0], 1: DESCRIPTIONS[1], 2: DESCRIPTIONS[0]} | RANDOM_DESCRIPTIONS
    settings = {"num_trials": 12, "generation_length": 12, "kl_targets": [0.5, -0.5]}
    table, scorer = scored("output-detection", subject, range(6), descriptions | {5: "nothing"}, judge, **settings)
    assert (table.loc[[0, 1], "output-detection"] >= 0.9).all(), table
    assert table.loc[2, "output-detection"] <= CHANCE + 0.15, table
    assert abs(table.loc[[3, 4], "output-detection"].mean() - CHANCE) < 0.25, table
    assert table.loc[5, "output-detection_reason"] == Reason.KL_TARGET_UNREACHABLE  # it writes nothing
    assert np.allclose(table.loc[range(5), "output-detection_chance"], CHANCE)
    assert (table.loc[range(5), "output-detection_trials"] == 12).all()
    # every feature's continuations of one prompt in one generate call
    assert scorer.counts.generate_calls == 3

    # Another variant (the cat and dog descriptions swapped) reuses the continuations: no model work at all.
    swapped = descriptions | {0: DESCRIPTIONS[1], 1: DESCRIPTIONS[0], 5: "nothing"}
    other, again = scored("output-detection", subject, range(6), swapped, judge, **settings)
    assert again.counts == ModelCounts()
    assert (other.loc[[0, 1], "output-detection"] <= CHANCE + 0.15).all(), other
    assert other.loc[2:, "output-detection"].equals(table.loc[2:, "output-detection"])


@pytest.mark.slow
def test_the_scorers_stage_hands_them_the_model_and_the_site(token_sae, subject, tmp_path):
    config = parse_config(
        {
            "corpus": {"num_samples": 40},
            "site": {"kind": "sae", "module": f"model.layers.{LAYER}", "sae": {"path": str(token_sae)}},
            "activations": {"max_length": 64, "cache_dir": str(tmp_path / "cache")},
            "scorers": {"enabled": ["input-score", "output-score"], "settings": {"input-score": {"min_examples": 1}}},
        }
    )
    undescribed = pd.DataFrame({"feature": range(6), "description": [None] * 6})
    table = score_with_other_scorers(config, undescribed, SharedStages(progress=False)).set_index("feature")
    alone, _ = scored("output-score", subject, range(6))
    assert np.allclose(table["output-score"], alone["output-score"])  # the stage's model and site: the same numbers
    assert table["input-score"].notna().any(), table


class _Keywords(Rater):
    """A rater that reads no prompts (judges texts itself), as the embedding rater."""

    capabilities = frozenset({Capability.JUDGES})
    label = "keywords"


@pytest.mark.slow
def test_undefined_with_reasons(subject):
    few, _ = scored("output-detection", subject, [0, 1], {0: DESCRIPTIONS[0], 1: DESCRIPTIONS[1]}, _Keywords())
    assert set(few["output-detection_reason"]) == {Reason.RATER_READS_NO_PROMPT}
    with LoopbackServer(FadeResponder()) as server:
        client = LLMClient(LLMConfig(model="openai/scripted", api_base=server.url, cache=False), progress=False)
        few, _ = scored("output-detection", subject, [0, 1], {0: DESCRIPTIONS[0], 1: DESCRIPTIONS[1]}, client)
        client.close()
    assert set(few["output-detection_reason"]) == {Reason.TOO_FEW_FEATURES}
    up_proj = SubjectSite(subject.model, NeuronSite(subject.model, f"model.layers.{LAYER}.mlp.up_proj", "output"))
    table, _ = scored("output-score", up_proj, [0, 1])
    assert set(table["output-score_reason"]) == {Reason.NO_OUTPUT_DIRECTION}
    scorer = SCORERS.get("input-score")()
    scorer.subject = up_proj
    cats = tuple(example(i, "A cat sat there.", "cat", 3.0) for i in range(10))
    table = scorer.score([FeatureRecord(0, cats)], {0: None}, None, ScorersConfig(), progress=False)
    assert set(table["input-score_reason"]) == {Reason.NO_OUTPUT_DIRECTION}
    with pytest.raises(ConfigError, match="runs the subject model"):
        run_scorers([bare(0)], {0: None}, ScorersConfig(enabled=["output-score"]), None, progress=False)
