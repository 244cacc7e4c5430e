"""The embedding rater: sentence-embedding similarity between a description and each text, thresholded.

A proxy for an LLM judge (docs/fade-deviations.md, R1): it reads no instructions and sees no highlights
or token positions, only how close a text's meaning is to the description's. Thresholds are set per
description from the similarities of a fixed background sample of the natural corpus, so a description
whose wording lies close to every text (or far from all) is judged on the same footing as any other: a
text is rated 2 when it is at least as similar as the `rated_2_quantile` of the background, 1 from the
`rated_1_quantile`, else 0, and judged "yes" (detection) from the `yes_quantile`. For the intruder scorer,
which has no description, the odd one out is the text least similar to the mean of the others. Embeddings
are computed once per text and kept for the run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.config import EMBEDDING_RATER_PREFIX, EmbeddingRaterConfig, FadeConfig, identity_payload
from harness.errors import ConfigError
from harness.model import encoder_folder, load_encoder
from harness.raters._base import rater_settings
from harness.raters._protocol import Capability, Rater

_MIN_BACKGROUND = 20


@dataclass(frozen=True)
class Thresholds:
    """Similarities at or above which a text is rated 1 or 2, or judged "yes", for one description."""

    rated_1: float
    rated_2: float
    yes: float


class EmbeddingRater(Rater):
    """Rates and judges texts for a description by embedding similarity (thread-safe); reads no prompts.

    Args:
        fade: FADE settings: `rater.model` is `embedding/<encoder>` (an embedded encoder name or a local
            folder), `embedding_rater` the thresholds and encoder settings.
        corpus_texts: the natural corpus; `embedding_rater.background_samples` of them, drawn with
            `embedding_rater.seed`, set the thresholds.

    Raises:
        ConfigError: the corpus is too small for a background, or the encoder is unknown.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.RATES, Capability.JUDGES, Capability.PICKS_ODD_ONE_OUT}
    )
    # Given as `fade.embedding_rater` (harness.config.RATER_SECTIONS): a section of FadeConfig older than rater
    # settings, kept there for the identity of the runs made with it.
    settings_model = EmbeddingRaterConfig

    def __init__(self, fade: FadeConfig, corpus_texts: Sequence[str]) -> None:
        self.name = fade.rater.model
        self.label = self.label_for(fade)
        self.settings: EmbeddingRaterConfig = rater_settings(fade)
        if len(corpus_texts) < _MIN_BACKGROUND:
            raise ConfigError(
                f"fade.rater {self.name!r} sets its thresholds on the corpus, which has {len(corpus_texts)} samples; "
                f"it needs at least {_MIN_BACKGROUND} (raise corpus.num_samples)"
            )
        self.encoder = load_encoder(
            self.name.removeprefix(EMBEDDING_RATER_PREFIX), self.settings.device, setting="fade.rater.model"
        )
        self._vectors: dict[str, np.ndarray] = {}
        self._thresholds: dict[str, Thresholds] = {}
        self._lock = threading.Lock()
        rng = np.random.default_rng(self.settings.seed)
        count = min(self.settings.background_samples, len(corpus_texts))
        chosen = np.sort(rng.choice(len(corpus_texts), size=count, replace=False))
        self._background = self._embed([corpus_texts[index] for index in chosen.tolist()])

    @staticmethod
    def label_for(fade: FadeConfig) -> str:
        """Named as a proxy for an LLM judge."""
        return f"{fade.rater.model} (embedding proxy for an LLM judge)"

    @staticmethod
    def identity(fade: FadeConfig) -> dict[str, Any]:
        """The encoder and the thresholds' settings."""
        return {"model": fade.rater.model, "embedding_rater": identity_payload(rater_settings(fade))}

    @staticmethod
    def check(fade: FadeConfig, cache_dir: str | Path) -> None:
        """The encoder is an embedded one that is installed, or a local folder holding one."""
        encoder_folder(fade.rater.model.removeprefix(EMBEDDING_RATER_PREFIX), "fade.rater.model")

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
            if missing:
                vectors = self.encoder.encode(
                    missing, batch_size=self.settings.batch_size, max_length=self.settings.max_length, progress=False
                )
                self._vectors.update(zip(missing, vectors))
            dimension = self.encoder.model.config.hidden_size
            return np.stack([self._vectors[text] for text in texts]) if texts else np.zeros((0, dimension), np.float32)

    def similarities(self, description: str, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each text to the description."""
        return self._embed(texts) @ self._embed([description])[0]

    def thresholds(self, description: str) -> Thresholds:
        """The description's rating thresholds: quantiles of its similarity to the background."""
        with self._lock:
            known = self._thresholds.get(description)
        if known is None:
            background = self._background @ self._embed([description])[0]
            settings = self.settings
            quantiles = [settings.rated_1_quantile, settings.rated_2_quantile, settings.yes_quantile]
            known = Thresholds(*(float(value) for value in np.quantile(background, quantiles)))
            with self._lock:
                self._thresholds[description] = known
        return known

    def rate(self, description: str, texts: Sequence[str]) -> list[int]:
        """FADE ratings: 2 at or above the rated_2 threshold, 1 at or above rated_1, else 0."""
        similarity = self.similarities(description, texts)
        limits = self.thresholds(description)
        return ((similarity >= limits.rated_1).astype(int) + (similarity >= limits.rated_2).astype(int)).tolist()

    def odd_ones_out(self, groups: Sequence[Sequence[str]]) -> list[tuple[int, list[float]]]:
        """For each group of texts, the one least like the others (the intruder scorer's proxy) and each
        text's cosine similarity to the mean embedding of the others in its group; ties go to the first.
        Needs no description, so no thresholds. Every new text is embedded in one pass."""
        self._embed([text for group in groups for text in group])
        picks = []
        for group in groups:
            vectors = self._embed(group).astype(np.float64)
            others = (vectors.sum(axis=0, keepdims=True) - vectors) / max(len(group) - 1, 1)
            norms = np.linalg.norm(others, axis=1)
            similarity = np.einsum("ij,ij->i", vectors, others) / np.where(norms > 0, norms, 1.0)
            picks.append((int(np.argmin(similarity)), similarity.tolist()))
        return picks

    def judge(self, description: str, texts: Sequence[str]) -> tuple[list[bool], list[float]]:
        """Yes/no judgments (yes from the yes threshold) and the similarities, a score for AUROC."""
        similarity = self.similarities(description, texts)
        return (similarity >= self.thresholds(description).yes).tolist(), similarity.astype(float).tolist()
