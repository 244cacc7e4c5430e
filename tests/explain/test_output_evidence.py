"""Output-side evidence (VocabProj, TokenChange): the paper's formulae on constructed inputs, the batched passes
against one feature at a time, and known answers on an SAE latent planted to promote one token."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from harness.config import OutputEvidenceConfig, SAEConfig
from harness.explain import OutputEvidence, TokenChange, TokenList, output_evidence, render_output_evidence
from harness.explain._output_evidence import (
    PROMOTED_LABEL,
    masked_logit_sums,
    mean_logit_change,
    ranked,
    render_tokens,
    token_change_lists,
    token_change_samples,
    vocab_projection_lists,
)
from harness.sites import NeuronSite, SAESite, load_sae

TEXTS = ["The for loop iterates over items.", "def greet(name): return name"]


def token_list(*tokens: str) -> TokenList:
    return TokenList(tuple(range(len(tokens))), tokens, tuple(float(-index) for index in range(len(tokens))))


def test_ranked_takes_the_largest_and_the_smallest_values_with_ties_to_the_lower_index():
    values = torch.tensor([[0.5, 3.0, -1.0, 3.0, 0.0, -1.0]])
    top, bottom = ranked(values, 3)
    assert top.tolist() == [[1, 3, 0]] and bottom.tolist() == [[2, 5, 4]]
    reference = np.random.default_rng(0).normal(size=(4, 100))
    top, bottom = ranked(torch.from_numpy(reference), 7)
    assert (top.numpy() == np.argsort(-reference, axis=1)[:, :7]).all()
    assert (bottom.numpy() == np.argsort(reference, axis=1)[:, :7]).all()


def test_the_mean_change_is_the_papers_mean_over_samples_and_positions():
    """(clamped - clean).mean(0).mean(0) of the paper's equal-length samples, from two sums; padded positions
    count nowhere."""
    rng = np.random.default_rng(1)
    clean, clamped = (torch.from_numpy(rng.normal(size=(3, 5, 11))) for _ in range(2))
    full = torch.ones((3, 5), dtype=torch.bool)
    paper = (clamped - clean).mean(dim=0).mean(dim=0)
    ours = mean_logit_change(masked_logit_sums(clamped, full).sum(0), masked_logit_sums(clean, full).sum(0), 15)
    assert torch.allclose(ours, paper.double())
    padded = full.clone()
    padded[0, 3:] = False
    garbage = clamped.clone()
    garbage[0, 3:] = 1e6  # what a padded position holds must not matter
    real = torch.cat([(clamped - clean)[0, :3], (clamped - clean)[1:].reshape(-1, 11)])
    ours = mean_logit_change(masked_logit_sums(garbage, padded).sum(0), masked_logit_sums(clean, padded).sum(0), 13)
    assert torch.allclose(ours, real.mean(dim=0).double())


def test_token_change_promoted_tokens_are_raised_when_high_or_lowered_when_low():
    change = TokenChange(
        raised_at_positive=token_list(" a", "b"),
        lowered_at_positive=token_list("x", " y"),
        raised_at_negative=token_list(" y", "z"),
        lowered_at_negative=token_list(" a", "c"),
    )
    text = render_output_evidence(OutputEvidence(3, token_change=change), ["token-change"])
    assert f"{PROMOTED_LABEL}[' a', 'b', 'c']" in text
    assert "Suppressed tokens: ['x', ' y', 'z']" in text
    assert render_output_evidence(OutputEvidence(3, token_change=change), ["vocab-proj"]) is None


def test_tokens_are_written_with_their_whitespace_and_quotes_visible():
    assert render_tokens([" the", "\n", "it's", "<<x>>"]) == """[' the', '\\n', "it's", '<<x>>']"""


def test_token_change_samples_are_drawn_without_replacement_and_seeded():
    corpus = pd.DataFrame({"sample_id": range(10), "text": [f"text {index}" for index in range(10)]})
    drawn = token_change_samples(corpus, 4, seed=3)
    assert len(set(drawn)) == 4 and drawn == token_change_samples(corpus, 4, seed=3)
    assert drawn != token_change_samples(corpus, 4, seed=4)
    assert sorted(token_change_samples(corpus, 50, seed=0)) == sorted(corpus["text"])


@pytest.fixture(scope="module")
def planted(subject_model, planted_sae):
    folder, module, banana = planted_sae
    return SAESite(subject_model, module, "output", load_sae(SAEConfig(path=str(folder)))), banana


@pytest.mark.slow
def test_a_planted_latent_names_its_token_and_a_random_one_does_not(subject_model, planted):
    site, banana = planted
    corpus = pd.DataFrame({"sample_id": [0, 1], "text": TEXTS})
    evidence = output_evidence(
        subject_model,
        site,
        corpus,
        [0, 1],
        OutputEvidenceConfig(vocab_tokens=10, token_change_tokens=5),
        {"vocab-proj", "token-change"},
        max_length=16,
        batch_size=3,
    )
    assert evidence[0].vocab_top.token_ids[0] == banana and evidence[0].vocab_top.tokens[0] == " banana"
    assert evidence[0].token_change.raised_at_positive.token_ids[0] == banana
    assert evidence[0].token_change.lowered_at_negative.token_ids[0] == banana
    assert evidence[0].vocab_top.values == tuple(sorted(evidence[0].vocab_top.values, reverse=True))
    random_lists = evidence[1].token_change
    assert banana not in evidence[1].vocab_top.token_ids + evidence[1].vocab_bottom.token_ids
    assert banana not in random_lists.raised_at_positive.token_ids + random_lists.lowered_at_negative.token_ids
    text = render_output_evidence(evidence[0], ["vocab-proj", "token-change"])
    assert text.count(f"{PROMOTED_LABEL}[' banana'") == 2


@pytest.mark.slow
def test_the_batched_passes_equal_one_feature_at_a_time_with_the_sites_clamp(subject_model):
    """The paper's loop: per feature, the model run clean and under `FeatureSite.clamp` at +v and -v on the
    same equal-length samples, (clamped - clean).mean(0).mean(0); against one batched grid split across passes."""
    site = NeuronSite(subject_model, "model.layers.3.mlp.act_fn", "output")
    inputs = subject_model.tokenizer(TEXTS, return_tensors="pt", padding=True, truncation=True, max_length=6)
    assert inputs["attention_mask"].all()  # both texts are longer than 6 tokens: no padding, the paper's case
    settings = OutputEvidenceConfig(token_change_tokens=8, clamp_value=4.0)
    batched = token_change_lists(subject_model, site, [5, 77], TEXTS, settings, max_length=6, batch_size=3)
    network = subject_model.model
    with torch.inference_mode():
        clean = network(**inputs).logits.double()
        for feature in (5, 77):
            lists = []
            for value in (4.0, -4.0):
                with site.clamp(network, feature, value):
                    change = (network(**inputs).logits.double() - clean).mean(dim=0).mean(dim=0)
                top, bottom = ranked(change[None], 8)
                lists += [top[0].tolist(), bottom[0].tolist(), change]
            ours = batched[feature]
            assert list(ours.raised_at_positive.token_ids) == lists[0]
            assert list(ours.lowered_at_positive.token_ids) == lists[1]
            assert list(ours.raised_at_negative.token_ids) == lists[3]
            assert list(ours.lowered_at_negative.token_ids) == lists[4]
            expected = [float(lists[2][token]) for token in lists[0]]
            assert ours.raised_at_positive.values == pytest.approx(expected, rel=1e-4, abs=1e-4)


@pytest.mark.slow
def test_vocab_proj_is_the_papers_unembedding_of_the_normed_output_weights(subject_model):
    """The paper's `unembed(ln_final(W_out[feature]))` for MLP neurons, written out with SmolLM2's modules."""
    site = NeuronSite(subject_model, "model.layers.3.mlp.act_fn", "output")
    network = subject_model.model
    lists = vocab_projection_lists(subject_model, site, [5, 77], 12)
    with torch.inference_mode():
        for feature in (5, 77):
            w_out = network.model.layers[3].mlp.down_proj.weight[:, feature]
            logits = network.lm_head(network.model.norm(w_out)).float()
            assert list(lists[feature][0].token_ids) == logits.topk(12).indices.tolist()
            assert list(lists[feature][1].token_ids) == logits.topk(12, largest=False).indices.tolist()
            assert lists[feature][0].values == pytest.approx(logits.topk(12).values.tolist(), rel=1e-5)
            assert lists[feature][0].tokens[0] == subject_model.tokenizer.decode([lists[feature][0].token_ids[0]])
