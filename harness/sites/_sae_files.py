"""Sparse autoencoders read from local files (SAELens folders, GemmaScope params.npz) and their encoders.

Weights are float32 torch tensors with SAELens' orientation: W_enc [d_in, d_sae], W_dec [d_sae, d_in].
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import SAEConfig
from harness.errors import SiteError
from harness.registry import SAE_ACTIVATIONS

SAELENS_CONFIG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
GEMMASCOPE_PARAMS = "params.npz"


@dataclass(frozen=True)
class SAEActivation:
    """How pre-activations become latents."""

    apply: Callable[[torch.Tensor, torch.Tensor | None, int | None], torch.Tensor]  # (pre, threshold, k)
    needs_all_latents: bool  # True when a latent's value depends on the other latents (TopK)
    needs_threshold: bool = False


def _relu(pre: torch.Tensor, threshold: torch.Tensor | None, k: int | None) -> torch.Tensor:
    return torch.relu(pre)


def _jumprelu(pre: torch.Tensor, threshold: torch.Tensor | None, k: int | None) -> torch.Tensor:
    return torch.relu(pre) * (pre > threshold)


def _topk(pre: torch.Tensor, threshold: torch.Tensor | None, k: int | None) -> torch.Tensor:
    top = pre.topk(min(k, pre.shape[-1]), dim=-1)
    return torch.zeros_like(pre).scatter_(-1, top.indices, torch.relu(top.values))


# Registered in harness.registry.SAE_ACTIVATIONS.
RELU = SAEActivation(_relu, needs_all_latents=False)
JUMPRELU = SAEActivation(_jumprelu, needs_all_latents=False, needs_threshold=True)
TOPK = SAEActivation(_topk, needs_all_latents=True)


@dataclass
class SparseAutoencoder:
    """An SAE's weights and encoder settings; `content_hash` identifies the files for cache keys."""

    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    threshold: torch.Tensor | None
    activation: str
    k: int | None
    apply_b_dec_to_input: bool
    source: str
    content_hash: str
    hook_name: str | None = None  # where the SAE was trained, from its config (for error hints)
    _columns: tuple[bytes, torch.Tensor, torch.Tensor, torch.Tensor | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    @property
    def identity(self) -> str:
        return f"{self.content_hash}:{self.activation}:k={self.k}:b_dec_in={self.apply_b_dec_to_input}"

    def to(self, device: torch.device | str) -> SparseAutoencoder:
        """This SAE with its weights on `device` (itself when already there)."""
        if self.W_enc.device == torch.device(device):
            return self
        threshold = None if self.threshold is None else self.threshold.to(device)
        return replace(self, W_enc=self.W_enc.to(device), b_enc=self.b_enc.to(device), W_dec=self.W_dec.to(device),
                       b_dec=self.b_dec.to(device), threshold=threshold)  # fmt: skip

    def encode(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Latent activations (..., d_sae), or (..., len(features)) for selected latents.

        Args:
            x: float32 inputs (..., d_in) on the SAE's device.
            features: int64 latent indices; elementwise encoders then compute only those columns.
        """
        activation = SAE_ACTIVATIONS.get(self.activation)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        if features is None or activation.needs_all_latents:
            latents = activation.apply(x @ self.W_enc + self.b_enc, self.threshold, self.k)
            return latents if features is None else latents.index_select(-1, features)
        W_enc, b_enc, threshold = self._encoder_columns(features)
        return activation.apply(x @ W_enc + b_enc, threshold, self.k)

    def _encoder_columns(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # The engine asks for the same features every batch: slice the encoder once.
        key = features.cpu().numpy().tobytes()
        if self._columns is None or self._columns[0] != key:
            threshold = None if self.threshold is None else self.threshold[features]
            self._columns = (key, self.W_enc[:, features].contiguous(), self.b_enc[features], threshold)
        return self._columns[1:]


def load_sae(config: SAEConfig) -> SparseAutoencoder:
    """Read an SAE from a SAELens folder (cfg.json + sae_weights.safetensors) or a GemmaScope params.npz.

    Args:
        config: the path, the format ('auto' detects it) and optional overrides of the encoder and k.
    """
    path = Path(config.path).expanduser()
    fmt = _detect_format(path) if config.format == "auto" else config.format
    if fmt == "saelens":
        arrays, settings, content_hash = _read_saelens(path)
    else:
        arrays, settings, content_hash = _read_gemmascope(path)
    activation = SAE_ACTIVATIONS.chosen(config.activation) or settings["activation"]
    k = config.k if config.k is not None else settings.get("k")
    return _build(path, arrays, activation, k, settings, content_hash)


def _detect_format(path: Path) -> str:
    if path.is_file() and path.suffix == ".npz":
        return "gemmascope"
    if path.is_dir() and (path / SAELENS_CONFIG).is_file() and (path / SAELENS_WEIGHTS).is_file():
        return "saelens"
    if path.is_dir() and (path / GEMMASCOPE_PARAMS).is_file():
        return "gemmascope"
    found = sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else None
    raise SiteError(
        f"no SAE found at {path}: expected a folder with {SAELENS_CONFIG} + {SAELENS_WEIGHTS} (SAELens) or a "
        f"{GEMMASCOPE_PARAMS} file / folder holding one (GemmaScope); "
        + (f"the folder holds {found}" if found is not None else "the path does not exist")
    )


def _file_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_saelens(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    from safetensors.numpy import load_file

    config_file, weights_file = folder / SAELENS_CONFIG, folder / SAELENS_WEIGHTS
    for required in (config_file, weights_file):
        if not required.is_file():
            raise SiteError(f"SAELens SAE at {folder} lacks {required.name}")
    try:
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
        arrays = load_file(str(weights_file))
    except (OSError, ValueError) as error:
        raise SiteError(f"cannot read the SAELens SAE at {folder}: {error}") from error
    normalize = cfg.get("normalize_activations") or "none"
    if normalize != "none":
        raise SiteError(f"SAE at {folder}: normalize_activations={normalize!r} is not supported (only 'none')")
    settings = {
        "activation": _saelens_activation(cfg, "threshold" in arrays, folder),
        "k": cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k"),
        "apply_b_dec_to_input": bool(cfg.get("apply_b_dec_to_input", False)),
        "hook_name": cfg.get("hook_name"),
        "d_in": cfg.get("d_in"),
        "d_sae": cfg.get("d_sae"),
    }
    return arrays, settings, _file_hash(config_file, weights_file)


def _saelens_activation(cfg: dict[str, Any], has_threshold: bool, folder: Path) -> str:
    architecture = cfg.get("architecture")
    activation_fn = cfg.get("activation_fn") or cfg.get("activation_fn_str")
    if architecture in ("jumprelu", "topk"):
        return architecture
    if architecture not in (None, "standard"):
        raise SiteError(f"SAE at {folder}: architecture {architecture!r} is not supported (standard, jumprelu, topk)")
    if activation_fn in SAE_ACTIVATIONS:
        return activation_fn
    if activation_fn is None:
        return "jumprelu" if has_threshold else "relu"
    raise SiteError(
        f"SAE at {folder}: activation_fn {activation_fn!r} is not supported ({', '.join(SAE_ACTIVATIONS)}); "
        "set site.sae.activation to override"
    )


def _read_gemmascope(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    params = path / GEMMASCOPE_PARAMS if path.is_dir() else path
    try:
        with np.load(params, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as error:
        raise SiteError(f"cannot read the GemmaScope SAE file {params}: {error}") from error
    return arrays, {"activation": "jumprelu", "apply_b_dec_to_input": False}, _file_hash(params)


def _build(
    path: Path,
    arrays: dict[str, np.ndarray],
    activation: str,
    k: int | None,
    settings: dict[str, Any],
    content_hash: str,
) -> SparseAutoencoder:
    encoder = SAE_ACTIVATIONS.get(activation)
    required = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if encoder.needs_threshold else [])
    missing = [name for name in required if name not in arrays]
    if missing:
        raise SiteError(
            f"SAE at {path} lacks the weights {missing} (has {sorted(arrays)}) needed by a {activation} SAE"
        )
    if activation == "topk" and not k:
        raise SiteError(f"SAE at {path} is a TopK SAE but gives no k; set site.sae.k")
    d_in, d_sae = arrays["W_enc"].shape if arrays["W_enc"].ndim == 2 else (None, None)
    expected = {
        "W_enc": (d_in, d_sae),
        "b_enc": (d_sae,),
        "W_dec": (d_sae, d_in),
        "b_dec": (d_in,),
        "threshold": (d_sae,),
    }
    wrong = [f"{name} {arrays[name].shape} (expected {expected[name]})" for name in expected
             if name in arrays and arrays[name].shape != expected[name]]  # fmt: skip
    for declared in ("d_in", "d_sae"):
        value = settings.get(declared)
        if value is not None and value != {"d_in": d_in, "d_sae": d_sae}[declared]:
            wrong.append(f"config {declared}={value} but W_enc is {arrays['W_enc'].shape}")
    if d_in is None or wrong:
        raise SiteError(
            f"SAE at {path} has inconsistent shapes: {'; '.join(wrong) or 'W_enc is not 2-D'}; "
            "expected W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in], threshold [d_sae]"
        )
    weights = {name: torch.from_numpy(np.asarray(array, dtype=np.float32)) for name, array in arrays.items()}
    broken = [name for name in required if not torch.isfinite(weights[name]).all()]
    if broken:  # else every activation is NaN, and the subject model gets the blame later
        raise SiteError(
            f"SAE at {path}: the weights {broken} hold NaN or infinite values (a damaged or diverged SAE); "
            "use another SAE file"
        )
    return SparseAutoencoder(
        W_enc=weights["W_enc"],
        b_enc=weights["b_enc"],
        W_dec=weights["W_dec"],
        b_dec=weights["b_dec"],
        threshold=weights.get("threshold"),
        activation=activation,
        k=int(k) if k else None,
        apply_b_dec_to_input=settings["apply_b_dec_to_input"],
        source=str(path),
        content_hash=content_hash,
        hook_name=settings.get("hook_name"),
    )
