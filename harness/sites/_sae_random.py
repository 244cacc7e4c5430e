"""The random-SAE control (docs/random-sae.md): an SAE of a trained one's shapes whose latents read seeded random
directions yet fire on as many corpus positions as the trained latents do, so that a description scores well
on it only through what autointerp metrics reward regardless of training (Heap et al., ICLR 2026).

A latent fires at a position when it is > 0 after the activation, that is when its pre-activation exceeds a
floor: 0 (ReLU), max(threshold, 0) (JumpReLU), or max(the k-th largest of the other latents, 0) (TopK). Each
random latent's bias is put midway between the c-th and (c+1)-th largest of (direction . input - floor) over
the corpus positions, c being the trained latent's firing count there: exact in one step for elementwise
activations; for TopK, where the floors depend on the other biases, the step is repeated until every count
matches (or the rounds run out).
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import torch

from harness.errors import HarnessWarning, SiteError
from harness.files import identity_hash
from harness.registry import SAE_ACTIVATIONS
from harness.sites._sae_files import SparseAutoencoder

TOPK_ROUNDS = 60  # TopK calibration steps at most; each is two matmuls of the inputs with the encoder
TOPK_TOLERANCE = 1  # positions a TopK latent's count may differ by (swaps between near-tied latents remain)
TOPK_DAMPING = 0.8  # share of each step's correction applied (measured: 1.0 oscillates, 0.8 settles fastest)
_CHUNK_ELEMENTS = 1 << 22  # positions x latents per piece of pre-activations held at once


class RandomSAEWarning(HarnessWarning):
    """A TopK random SAE's firing counts could not all be brought within TOPK_TOLERANCE of the trained ones."""


def random_sae(
    trained: SparseAutoencoder, inputs: torch.Tensor, seed: int, calibration_identity: str
) -> SparseAutoencoder:
    """The calibrated random counterpart of `trained` (same shapes, activation, k, b_dec and threshold).

    Encoder columns and decoder rows are one seeded Gaussian direction per latent (tied, as SAE training
    starts), scaled to the trained column's and row's norms; the biases make each latent fire on the inputs
    as often as the trained one does (dead latents stay dead).

    Args:
        trained: the SAE read from its files.
        inputs: (positions, d_in) float32: the site's tensor at every corpus position the activation pass reads.
        seed: seed of the directions.
        calibration_identity: what determines `inputs` (model, corpus, position rules), for the content hash.
    """
    if inputs.shape[0] == 0:
        raise SiteError(
            f"the random SAE for {trained.source} has no corpus positions to match firing rates on: every position "
            "is padding or skipped; give corpus samples, or skip fewer (activations.skip_first_positions, "
            "activations.skip_special_tokens)"
        )
    trained, inputs = trained.to(inputs.device), inputs.float()  # calibrated where the model ran (a GPU, if any)
    directions = _directions(trained.d_in, trained.d_sae, seed).to(inputs.device)
    W_enc = directions * trained.W_enc.norm(dim=0)
    W_dec = directions.T * trained.W_dec.norm(dim=1, keepdim=True)
    content_hash = identity_hash(
        {"trained": trained.content_hash, "weights": "random", "seed": seed, "calibration": calibration_identity}
    )
    uncalibrated = replace(trained, W_enc=W_enc, b_enc=torch.zeros_like(trained.b_enc), W_dec=W_dec,
                           source=f"{trained.source} (random, seed {seed})", content_hash=content_hash)  # fmt: skip
    return replace(uncalibrated, b_enc=_calibrated_biases(uncalibrated, inputs, firing_counts(trained, inputs)))


def firing_counts(sae: SparseAutoencoder, inputs: torch.Tensor) -> torch.Tensor:
    """int64 (d_sae,): at how many of `inputs`' rows each latent is > 0 after the activation."""
    counts = torch.zeros(sae.d_sae, dtype=torch.int64, device=inputs.device)
    for rows in _row_pieces(inputs.shape[0], sae.d_sae):
        counts += (sae.encode(inputs[rows]) > 0).sum(dim=0)
    return counts


def _directions(d_in: int, d_sae: int, seed: int) -> torch.Tensor:
    """(d_in, d_sae) unit columns, drawn on the CPU so that a seed gives the same directions on every device."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(d_in, d_sae, generator=generator, dtype=torch.float32)
    return gaussian / gaussian.norm(dim=0, keepdim=True)


def _calibrated_biases(sae: SparseAutoencoder, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """b_enc with which each latent fires on `targets` of the rows of `inputs` (see the module's docstring)."""
    centred = inputs - sae.b_dec if sae.apply_b_dec_to_input else inputs
    if not SAE_ACTIVATIONS.get(sae.activation).needs_all_latents:
        return _step(centred, sae, sae.b_enc, targets)[0]  # exact: a latent's floor is its own
    bias, largest = sae.b_enc, 0
    for _ in range(TOPK_ROUNDS):
        response, counts = _step(centred, sae, bias, targets)
        largest = int((counts - targets).abs().max())
        if largest <= TOPK_TOLERANCE:
            return bias
        bias = bias + TOPK_DAMPING * (response - bias)  # all at once overshoots: each step assumes the rest stay
    warnings.warn(
        f"the random SAE for {sae.source}: after {TOPK_ROUNDS} calibration rounds a latent's firing count still "
        f"differs from the trained one's by up to {largest} of {inputs.shape[0]} positions",
        RandomSAEWarning,
        stacklevel=4,
    )
    return bias


def _step(
    centred: torch.Tensor, sae: SparseAutoencoder, bias: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each latent's bias that makes it fire `targets` times if the others keep `bias`, and how often each
    latent fires under `bias`."""
    activation = SAE_ACTIVATIONS.get(sae.activation)
    floor = torch.zeros(sae.d_sae, device=centred.device)
    if activation.needs_threshold and sae.threshold is not None:
        floor = sae.threshold.clamp(min=0.0)
    # TopK (the registered activation whose latents compete): a latent among a position's top k has the
    # (k+1)-th largest pre-activation as its rivals' k-th, any other latent the k-th.
    kth = _kth_largest(centred, sae, bias) if activation.needs_all_latents else None
    response = torch.empty_like(bias)
    counts = torch.empty(sae.d_sae, dtype=torch.int64, device=centred.device)
    for latents in _latent_pieces(centred.shape[0], sae.d_sae):
        reads = centred @ sae.W_enc[:, latents]
        position_floor = floor[latents].expand_as(reads)
        if kth is not None:
            rivals = torch.where(reads + bias[latents] >= kth[:, :1], kth[:, 1:], kth[:, :1])
            position_floor = torch.maximum(position_floor, rivals.clamp(min=0.0))
        margin = reads - position_floor  # the latent fires where margin + bias > 0
        counts[latents] = (margin + bias[latents] > 0).sum(dim=0)
        response[latents] = -_cut(margin, targets[latents])
    return response, counts


def _kth_largest(centred: torch.Tensor, sae: SparseAutoencoder, bias: torch.Tensor) -> torch.Tensor:
    """(positions, 2): each position's k-th and (k+1)-th largest pre-activation (-inf where there are fewer)."""
    k = min(int(sae.k or sae.d_sae), sae.d_sae)
    ranks = min(k + 1, sae.d_sae)
    kth = torch.full((centred.shape[0], 2), float("-inf"), device=centred.device)
    for rows in _row_pieces(centred.shape[0], sae.d_sae):
        kth[rows, : ranks - k + 1] = (centred[rows] @ sae.W_enc + bias).topk(ranks, dim=-1).values[:, k - 1 :]
    return kth


def _cut(margins: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per column: a value with exactly counts[j] of the column's margins above it (ties aside), midway
    between the counts[j]-th and (counts[j]+1)-th largest; beyond the largest / smallest for 0 / all."""
    # Only the largest max(counts)+1 are needed: far fewer than all for sparse latents (topk beats a sort 5-10x).
    ordered = margins.topk(min(int(counts.max()) + 1, margins.shape[0]), dim=0).values
    largest, smallest = ordered[:1], margins.amin(dim=0, keepdim=True)
    span = largest - smallest
    span = torch.where(span > 0, span, torch.ones_like(span))
    padded = torch.cat([largest + span, ordered, smallest - span])
    columns = torch.arange(margins.shape[1], device=margins.device)
    return (padded[counts, columns] + padded[counts + 1, columns]) / 2


def _row_pieces(positions: int, latents: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // latents)
    return [slice(start, start + step) for start in range(0, positions, step)]


def _latent_pieces(positions: int, latents: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(positions, 1))
    return [slice(start, start + step) for start in range(0, latents, step)]
