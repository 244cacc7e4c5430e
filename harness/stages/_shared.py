"""The stages every variant of a process shares (model, corpus, site, activations, pools), and stage timing."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from harness.files import identity_hash

if TYPE_CHECKING:
    import pandas as pd

    from harness.config import HarnessConfig


class StageTimer:
    """Wall time per stage, logged as `time_<stage>_s`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def as_metrics(self) -> dict[str, float]:
        return {f"time_{name}_s": value for name, value in self.seconds.items()}


class SharedStages:
    """Model, corpus, site and activations, computed once per process for every variant that shares them."""

    def __init__(self, progress: bool = True) -> None:
        self.progress = progress
        self._memo: dict[tuple[str, str], Any] = {}

    def _once(self, kind: str, key: str, build: Callable[[], Any]) -> Any:
        if (kind, key) not in self._memo:
            self._memo[(kind, key)] = build()
        return self._memo[(kind, key)]

    def model(self, config: HarnessConfig):
        from harness.model import load_subject_model

        return self._once("model", config.model.fingerprint(), lambda: load_subject_model(config.model))

    def corpus(self, config: HarnessConfig) -> pd.DataFrame:
        from harness.corpus import load_corpus

        key = config.corpus.fingerprint() + config.model.fingerprint()
        return self._once("corpus", key, lambda: load_corpus(config.corpus, self.model(config).tokenizer))

    def site(self, config: HarnessConfig):
        """The feature site; a random SAE (site.sae.weights: random) is calibrated on the corpus, read once more."""
        from harness.activations import calibration_corpus
        from harness.config import ACTIVATION_VALUE_SETTINGS, identity_payload
        from harness.sites import build_site

        def build():
            loaded = self.model(config)
            corpus = None
            if config.site.reads_corpus:
                corpus = calibration_corpus(loaded, self.corpus(config), config.activations, progress=self.progress)
            return build_site(config.site, loaded, corpus)

        key = config.site.fingerprint() + config.model.fingerprint()
        if config.site.reads_corpus:  # the positions it reads: the activation pass's
            key += config.corpus.fingerprint() + identity_hash(
                identity_payload(config.activations, only=ACTIVATION_VALUE_SETTINGS)
            )
        return self._once("site", key, build)

    def activations(self, config: HarnessConfig):
        from harness.activations import extract_activations

        return self._once(
            "activations",
            self._activations_key(config),
            lambda: extract_activations(
                self.model(config), self.site(config), self.corpus(config), config.activations, progress=self.progress
            ),
        )

    def pools(self, config: HarnessConfig, **settings: Any):
        """The features' activation pools (`pool_examples` with `settings`; the ones not given at their defaults, so
        equal pools are made once whoever asks)."""
        from harness.activations import pool_examples

        defaults = {
            name: parameter.default
            for name, parameter in inspect.signature(pool_examples).parameters.items()
            if parameter.kind is parameter.KEYWORD_ONLY
        }
        settings = defaults | settings
        return self._derived(config, "pools", settings, partial(pool_examples, **settings))

    def delphi_windows(self, config: HarnessConfig):
        """delphi's test windows of every feature (scorers.convention: delphi), read twice from the kept values."""
        from harness.activations import delphi_windows

        settings = config.scorers.delphi
        derive = partial(delphi_windows, settings=settings, progress=self.progress)
        return self._derived(config, "delphi-windows", {"settings": settings.model_dump(mode="json")}, derive)

    def saebench_examples(self, config: HarnessConfig):
        """SAEBench's examples of every feature (the saebench scorer, the 'saebench' explainer selection), all
        features' at once in memory."""
        from harness.activations import saebench_examples
        from harness.config import SAEBenchConfig

        # SAEBench's defaults unless the saebench scorer is on (its settings are part of the identity only then)
        settings = config.scorers.saebench if "saebench" in config.scorers.enabled else SAEBenchConfig()
        derive = partial(saebench_examples, settings=settings, progress=self.progress)
        return self._derived(config, "saebench", {"settings": settings.model_dump(mode="json")}, derive)

    def _derived(self, config: HarnessConfig, kind: str, settings: dict[str, Any], derive: Callable[..., Any]) -> Any:
        """What `derive` (its `settings` bound) makes of the per-token values the activation pass kept (no model
        pass: the tokenizer only), once for every variant, process and run that shares the activations and
        `settings` (on disk next to the activation cache: `cached_derivation`)."""
        from harness.activations import cached_derivation

        def build() -> Any:
            activation_set = self.activations(config)
            return cached_derivation(
                config.activations.cache_dir,
                kind,
                activation_set,
                settings,
                lambda: derive(self.model(config).tokenizer, self.corpus(config), activation_set, config.activations),
            )

        return self._once(kind, self._activations_key(config) + identity_hash(settings), build)

    @staticmethod
    def _activations_key(config: HarnessConfig) -> str:
        return "".join(part.fingerprint() for part in (config.model, config.corpus, config.site, config.activations))
