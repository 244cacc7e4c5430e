"""What a feature does to the model's output, for output-centric explainers (Gur-Arieh et al. 2025,
"Enhancing Automated Interpretability with Output-Centric Feature Descriptions"; docs/explainers.md).

VocabProj reads each feature's output direction through the final norm and the unembedding: the tokens it
raises and lowers most, with no forward pass. TokenChange runs corpus samples with the feature clamped to +v
and to -v at every position and takes, per token, the mean change of the logits against the clean run: the
clean pass is shared by every feature, the clamped ones go through the model together, a batch at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from harness.activations import tokenize
from harness.config import OutputEvidenceConfig, identity_payload
from harness.sites import FeatureSite, input_device, torch_model, vocab_projection


@dataclass(frozen=True)
class TokenList:
    """Tokens ranked by a logit value (the most raised first, or the most lowered first), with the values."""

    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class TokenChange:
    """The tokens whose mean logit changes most when the feature is clamped to +v (`at_positive`) and to -v."""

    raised_at_positive: TokenList
    lowered_at_positive: TokenList
    raised_at_negative: TokenList
    lowered_at_negative: TokenList


@dataclass(frozen=True)
class OutputEvidence:
    """One feature's output-side evidence; a kind an explainer does not read is None."""

    feature: int
    vocab_top: TokenList | None = None  # the highest logits of the direction's vocabulary projection
    vocab_bottom: TokenList | None = None  # the lowest
    token_change: TokenChange | None = None


# The settings each kind of evidence reads (the rest of explain.output shapes the other kind).
_SETTINGS = {
    "vocab-proj": ("vocab_tokens",),
    "token-change": ("token_change_tokens", "token_change_samples", "clamp_value", "seed"),
}


def output_settings(settings: OutputEvidenceConfig, kinds: Sequence[str]) -> dict[str, Any]:
    """The settings that shape the evidence of `kinds` (part of an explainer's settings hash)."""
    return identity_payload(settings, only=tuple(name for kind in kinds for name in _SETTINGS[kind]))


def ranked(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, k) indices of the k largest values of each row, descending (ties: the lower index first), and the
    same for the k smallest, ascending."""
    top = torch.sort(values, dim=-1, descending=True, stable=True).indices[..., :k]
    bottom = torch.sort(values, dim=-1, stable=True).indices[..., :k]
    return top, bottom


def masked_logit_sums(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, vocab) float64: each row's logits summed over its real positions (mask: (batch, tokens) bool)."""
    real = mask.to(device=logits.device, dtype=torch.bool).unsqueeze(-1)
    return logits.masked_fill(~real, 0.0).sum(dim=1, dtype=torch.float64)


def mean_logit_change(clamped_sum: torch.Tensor, clean_sum: torch.Tensor, positions: int) -> torch.Tensor:
    """The mean over every real position of (clamped logits - clean logits): the difference of the two sums over
    the same positions, divided by their count (a mean is linear, so one clean pass serves every feature)."""
    return (clamped_sum - clean_sum) / positions


def vocabulary_size(loaded_model: Any) -> int:
    """How many logits name a token: the unembedding's rows that the tokenizer can decode (a model may pad its
    embeddings past the tokenizer's vocabulary)."""
    return min(int(torch_model(loaded_model).get_output_embeddings().weight.shape[0]), len(loaded_model.tokenizer))


def _token_list(tokenizer: Any, ids: torch.Tensor, values: torch.Tensor) -> TokenList:
    token_ids = [int(token) for token in ids.tolist()]
    return TokenList(
        token_ids=tuple(token_ids),
        tokens=tuple(tokenizer.batch_decode([[token] for token in token_ids])),
        values=tuple(float(values[token]) for token in token_ids),
    )


def vocab_projection_lists(
    loaded_model: Any, site: FeatureSite, features: Sequence[int], k: int
) -> dict[int, tuple[TokenList, TokenList]]:
    """Per feature, the k tokens its output direction raises most and the k it lowers most (one matrix product
    for every feature); a SiteError when the site has no output direction."""
    logits = vocab_projection(loaded_model, site.output_directions(loaded_model, features))
    logits = logits[:, : vocabulary_size(loaded_model)]
    top, bottom = ranked(logits, k)
    tokenizer = loaded_model.tokenizer
    return {
        int(feature): (_token_list(tokenizer, top[row], logits[row]), _token_list(tokenizer, bottom[row], logits[row]))
        for row, feature in enumerate(features)
    }


def token_change_samples(corpus: pd.DataFrame, count: int, seed: int) -> list[str]:
    """`count` texts of the corpus drawn at random without replacement (all of them when it has fewer)."""
    drawn = np.random.default_rng(seed).choice(len(corpus), size=min(count, len(corpus)), replace=False)
    return [str(corpus["text"].iloc[int(index)]) for index in drawn]


def _row_chunks(jobs: int, samples: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (job, sample) row of a job-major grid, `batch_size` rows at a time, as (jobs, samples) arrays."""
    rows = np.arange(jobs * samples)
    for start in range(0, rows.size, batch_size):
        chunk = rows[start : start + batch_size]
        yield chunk // samples, chunk % samples


def token_change_lists(
    loaded_model: Any,
    site: FeatureSite,
    features: Sequence[int],
    texts: list[str],
    settings: OutputEvidenceConfig,
    *,
    max_length: int,
    batch_size: int,
    progress: bool = False,
) -> dict[int, TokenChange]:
    """Per feature, TokenChange's four lists over `texts`: the k tokens whose mean logit rises and falls most
    with the feature clamped to +settings.clamp_value, and the same at -clamp_value.

    One grid of rows, job-major: the clean run (job 0), then each feature at +v and at -v, every job over
    every text; rows go through the model `batch_size` at a time, each with its own job's clamp.
    """
    site.resolve_features(list(features))
    encoded = tokenize(loaded_model.tokenizer, texts, max_length)
    device = input_device(loaded_model)
    input_ids = encoded["input_ids"].to(device)
    attention = encoded["attention_mask"].to(device)
    positions = int(attention.sum())
    value = settings.clamp_value
    clamps: list[tuple[int, float] | None] = [None]
    clamps += [(int(feature), sign * value) for feature in features for sign in (1.0, -1.0)]
    sums = torch.zeros((len(clamps), vocabulary_size(loaded_model)), dtype=torch.float64)
    chunks = list(_row_chunks(len(clamps), len(texts), batch_size))
    network = torch_model(loaded_model)
    for jobs, samples in tqdm(chunks, desc="token change", disable=not progress, leave=False):
        groups = [(torch.from_numpy(np.flatnonzero(jobs == job)), clamps[job]) for job in np.unique(jobs)]

        def clamp_rows(tensor: torch.Tensor) -> torch.Tensor:
            changed = tensor.clone()
            for rows, clamp in groups:
                if clamp is not None:
                    rows_here = rows.to(tensor.device)
                    changed[rows_here] = site.clamped(tensor[rows_here], clamp[0], clamp[1])
            return changed

        sample_rows = torch.from_numpy(samples).to(device)
        mask = attention[sample_rows].bool()
        with site.intercept(network, clamp_rows), torch.inference_mode():
            logits = network(input_ids=input_ids[sample_rows], attention_mask=mask.long(), use_cache=False).logits
        row_sums = masked_logit_sums(logits[..., : sums.shape[1]], mask).cpu()
        sums.index_add_(0, torch.from_numpy(jobs), row_sums)
    tokenizer = loaded_model.tokenizer
    k = settings.token_change_tokens
    changes = {}
    for index, feature in enumerate(features):
        lists = []
        for job in (1 + 2 * index, 2 + 2 * index):  # +v, then -v
            change = mean_logit_change(sums[job], sums[0], positions)
            top, bottom = ranked(change[None], k)
            lists += [_token_list(tokenizer, top[0], change), _token_list(tokenizer, bottom[0], change)]
        changes[int(feature)] = TokenChange(*lists)
    return changes


def output_evidence(
    loaded_model: Any,
    site: FeatureSite,
    corpus: pd.DataFrame,
    features: Sequence[int],
    settings: OutputEvidenceConfig,
    kinds: Collection[str],
    *,
    max_length: int,
    batch_size: int,
    progress: bool = False,
) -> dict[int, OutputEvidence]:
    """Each feature's output evidence of the `kinds` asked for ('vocab-proj', 'token-change').

    Args:
        loaded_model: the LoadedModel (model + tokenizer).
        site: the feature site; a SiteError when it has no output direction (VocabProj).
        corpus: the run's corpus; TokenChange draws `settings.token_change_samples` of its texts.
        features: the features explained.
        settings: the numbers of tokens and samples, the clamp value, the seed.
        kinds: which evidence to compute.
        max_length: the token length samples are cut to (the activation pass's).
        batch_size: rows per forward pass of TokenChange.
        progress: show a progress bar.
    """
    features = [int(feature) for feature in features]
    vocab = vocab_projection_lists(loaded_model, site, features, settings.vocab_tokens) if "vocab-proj" in kinds else {}
    changes: dict[int, TokenChange] = {}
    if "token-change" in kinds:
        texts = token_change_samples(corpus, settings.token_change_samples, settings.seed)
        changes = token_change_lists(
            loaded_model,
            site,
            features,
            texts,
            settings,
            max_length=max_length,
            batch_size=batch_size,
            progress=progress,
        )
    return {
        feature: OutputEvidence(
            feature,
            vocab_top=vocab[feature][0] if feature in vocab else None,
            vocab_bottom=vocab[feature][1] if feature in vocab else None,
            token_change=changes.get(feature),
        )
        for feature in features
    }


# How each list reads in a prompt; the scripted responder (harness.testing.responders) finds the first token of a
# PROMOTED_LABEL line.
PROMOTED_LABEL, SUPPRESSED_LABEL = "Promoted tokens: ", "Suppressed tokens: "
_HEADERS = {
    "vocab-proj": "Vocabulary projection: the tokens whose logits the feature's output direction raises most and "
    "lowers most, strongest first.",
    "token-change": "Token change: the tokens whose logits change most when the feature is clamped high and low "
    "on text, strongest first (promoted: raised when high or lowered when low; suppressed: the reverse).",
}


def render_tokens(tokens: Sequence[str]) -> str:
    """The tokens as a Python list of quoted strings: leading spaces, line breaks and quotes stay visible, and a
    token's text can never read as part of the prompt around it."""
    return repr(list(tokens))


def _interleaved(first: TokenList, second: TokenList) -> list[str]:
    """The two lists' tokens taken in turn (each strongest first), every token once."""
    merged = [token for pair in zip(first.tokens, second.tokens) for token in pair]
    return list(dict.fromkeys(merged))


def render_output_evidence(evidence: OutputEvidence, kinds: Sequence[str]) -> str | None:
    """The evidence of `kinds`, in that order, as prompt text: per kind a header, the promoted tokens and the
    suppressed tokens; None when a kind is missing from `evidence`."""
    sections = []
    for kind in kinds:
        if kind == "vocab-proj":
            if evidence.vocab_top is None or evidence.vocab_bottom is None:
                return None
            promoted, suppressed = list(evidence.vocab_top.tokens), list(evidence.vocab_bottom.tokens)
        else:
            change = evidence.token_change
            if change is None:
                return None
            promoted = _interleaved(change.raised_at_positive, change.lowered_at_negative)
            suppressed = _interleaved(change.lowered_at_positive, change.raised_at_negative)
        sections.append(
            f"{_HEADERS[kind]}\n{PROMOTED_LABEL}{render_tokens(promoted)}\n{SUPPRESSED_LABEL}{render_tokens(suppressed)}"
        )
    return "\n\n".join(sections)
