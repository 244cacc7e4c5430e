"""What every feature site shares: finding its module, reading/writing the module's tensor through a
hook, selecting features, and steering one feature during generation."""

from __future__ import annotations

import difflib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from harness.config import FeatureRange, SiteConfig, plugin_settings
from harness.errors import SiteError
from harness.registry import SITES

FeatureSpec = Sequence[int] | np.ndarray | FeatureRange | str


@dataclass(frozen=True)
class CalibrationCorpus:
    """The run's corpus as a site reads it, for sites calibrated on it (the random-SAE control)."""

    inputs: Callable[[FeatureSite], torch.Tensor]  # (positions, width) float32: the site's tensor at every
    # position the activation pass reads (harness.activations.calibration_corpus)
    identity: str  # what determines those inputs besides the site (model, corpus, position rules), for cache keys


class _StopForward(Exception):
    """Raised by the capture hook so that nothing after the site's module runs."""


def torch_model(model: Any) -> torch.nn.Module:
    """The torch module of a LoadedModel, or `model` itself when it already is one."""
    return model if isinstance(model, torch.nn.Module) else model.model


def input_device(model: Any) -> torch.device:
    """Where input ids go: the device of the input embeddings (also right for sharded models)."""
    return torch_model(model).get_input_embeddings().weight.device


def resolve_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """The submodule at dotted `path`; a SiteError listing the nearest valid paths otherwise."""
    names = [name for name, _ in model.named_modules() if name]
    if path in names:
        return model.get_submodule(path)
    parts = path.split(".")
    prefix = next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in names), "")
    children = [name for name in names if name.rsplit(".", 1)[0] == prefix] if prefix else []
    top_level = [name for name in names if "." not in name]
    nearest = difflib.get_close_matches(path, names, n=5, cutoff=0.6) + children[:10]
    nearest = list(dict.fromkeys(nearest)) or top_level
    raise SiteError(
        f"module path {path!r} does not exist in {type(model).__name__}. Nearest valid paths: "
        f"{', '.join(nearest)}. List them all with `harness model modules --model <model.name> [--filter mlp]`."
    )


class FeatureSite(ABC):
    """Features read from one module of the subject model (its output, or its input).

    Subclasses say how the captured tensor becomes feature activations (`encode`) and how one
    feature is changed for steering (`steered`); hooks, early exit and feature selection live here.
    """

    steering_uses_reference: ClassVar[bool]  # True: steer() needs FADE's reference value (max |activation|)
    # A plugin site's settings (`site.settings` in the config), validated at load; read with `given_settings`. A
    # site whose settings change its activations puts them in its `identity` (the activation cache's key).
    settings_model: ClassVar[type[BaseModel] | None] = None

    def __init__(self, model: Any, module_path: str, hook: str, selection: FeatureSpec = "all") -> None:
        if hook not in ("output", "input"):
            raise SiteError(f"site hook must be 'output' or 'input', got {hook!r}")
        self.module_path = module_path
        self.hook = hook
        self.selection = selection  # the features the config asks for; resolve_features(selection) checks them
        resolve_module(torch_model(model), module_path)
        self.width = self._probe_width(model)

    @classmethod
    @abstractmethod
    def from_config(cls, config: SiteConfig, loaded_model: Any, corpus: CalibrationCorpus | None = None) -> FeatureSite:
        """The site `config` describes on the loaded subject model (a harness LoadedModel or a torch model);
        `corpus` is what sites calibrated on the run's corpus read (others ignore it)."""

    @classmethod
    def given_settings(cls, config: SiteConfig) -> BaseModel:
        """A plugin site's settings: its `settings_model` over `site.settings` (defaults where the config gives none)."""
        return plugin_settings(cls, config.settings, "site.settings")

    @property
    def kind(self) -> str:
        """The site's registered kind (harness.registry.SITES)."""
        return SITES.name_of(type(self))

    @property
    @abstractmethod
    def num_features(self) -> int:
        """How many features the site has (valid indices are 0..num_features-1)."""

    @property
    def identity(self) -> str:
        """What determines the site's activations, for cache keys."""
        return f"{self.kind}:{self.module_path}:{self.hook}"

    @abstractmethod
    def encode(self, captured: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Activations (batch, tokens, len(features)) float32 of the selected features.

        Args:
            captured: the module tensor (batch, tokens, width) as read by the site's hook.
            features: int64 feature indices on `captured`'s device.
        """

    @abstractmethod
    def steered(self, captured: torch.Tensor, feature: int, factor: float, reference: float | None) -> torch.Tensor:
        """A new module tensor in which `feature` is changed at every position (never in place)."""

    @abstractmethod
    def feature_vectors(self, features: Sequence[int]) -> torch.Tensor:
        """(len(features), width) float32: the change of the site's tensor one unit of each feature makes."""

    def output_directions(self, model: Any, features: Sequence[int]) -> torch.Tensor:
        """(len(features), d_model) float32: the residual-stream direction each feature writes (harness.sites.
        _output); a SiteError when the site has none."""
        from harness.sites._output import no_output_direction, residual_write_map

        write = residual_write_map(model, self.module_path, self.hook)
        if write is None:
            raise no_output_direction(self.module_path, self.hook)
        selected = self.resolve_features(list(features))
        return self.feature_vectors(selected.tolist()).float().cpu() @ write.T

    def steering_is_identity(self, factor: float, reference: float | None) -> bool:
        """Whether `steered` with these settings returns its input unchanged, bit for bit, for every feature
        (then one continuation per prompt serves every feature). False unless a site knows better."""
        return False

    def resolve_features(self, features: FeatureSpec) -> np.ndarray:
        """int64 indices of the selected features, in the given order; SiteError when out of range.

        Args:
            features: 'all', a FeatureRange, or a sequence of indices (unique).
        """
        if isinstance(features, str):
            if features != "all":
                raise SiteError(
                    f"features must be 'all', a {{start, stop}} range or a list of indices, got {features!r}"
                )
            return np.arange(self.num_features, dtype=np.int64)
        if isinstance(features, FeatureRange):
            selected = np.arange(features.start, features.stop, dtype=np.int64)
        else:
            selected = np.asarray(features, dtype=np.int64).reshape(-1)
        if selected.size == 0:
            raise SiteError("no features selected; give 'all', a {start, stop} range or a non-empty list")
        if np.unique(selected).size != selected.size:
            raise SiteError("feature indices must be unique")
        out_of_range = selected[(selected < 0) | (selected >= self.num_features)]
        if out_of_range.size:
            raise SiteError(
                f"feature indices {out_of_range[:10].tolist()} are out of range for the {self.kind} site at "
                f"{self.module_path} ({self.hook}), which has {self.num_features} features (0..{self.num_features - 1})"
            )
        return selected

    @contextmanager
    def intercept(self, model: Any, change: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
        """While active, every forward of the site's module on this thread passes its tensor through `change`.

        `change` returns a replacement tensor, or None to leave the tensor as it is. Forwards on other
        threads are left alone: the embedded local LLM can be the subject model itself, and its answers
        (generated on the provider's thread) must not be steered or cut short by a hook of FADE's.
        """
        module = resolve_module(torch_model(model), self.module_path)
        owner = threading.get_ident()
        if self.hook == "output":

            def output_hook(_module, _args, output):
                if threading.get_ident() != owner:
                    return None
                tensor = _first_tensor(output, self)
                new = change(tensor)
                if new is None:
                    return None
                return (new, *output[1:]) if isinstance(output, tuple) else new

            handle = module.register_forward_hook(output_hook)
        else:

            def input_hook(_module, args, kwargs):
                if threading.get_ident() != owner:
                    return None
                if args:
                    new = change(_first_tensor(args[0], self))
                    return None if new is None else ((new, *args[1:]), kwargs)
                name = next((key for key, value in kwargs.items() if isinstance(value, torch.Tensor)), None)
                if name is None:
                    raise SiteError(f"module {self.module_path} was called without a tensor input to read")
                new = change(kwargs[name])
                return None if new is None else (args, {**kwargs, name: new})

            handle = module.register_forward_pre_hook(input_hook, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()

    def run_to_site(self, model: Any, inputs: dict[str, torch.Tensor], early_exit: bool = True) -> torch.Tensor:
        """Forward `inputs` and return the site's module tensor; with early_exit nothing later runs.

        Args:
            model: a LoadedModel or the torch model.
            inputs: model keyword inputs (input_ids, attention_mask) already on the model's device.
        """
        captured: list[torch.Tensor] = []

        def capture(tensor: torch.Tensor) -> None:
            captured.append(tensor.detach())
            if early_exit:
                raise _StopForward

        with self.intercept(model, capture), torch.inference_mode():
            try:
                torch_model(model)(**inputs, use_cache=False)
            except _StopForward:
                pass
        if not captured:
            raise SiteError(f"module {self.module_path} did not run during the forward pass; pick a module on the path")
        return captured[0]

    @contextmanager
    def steer(self, model: Any, feature: int, factor: float, reference: float | None = None) -> Iterator[None]:
        """While active, every forward (prompt and each generated token) changes `feature` at every position.

        Args:
            model: a LoadedModel or the torch model to hook.
            feature: the feature index.
            factor: FADE's modification factor.
            reference: FADE's scale for kinds that set a value (the feature's max |activation| on the
                corpus); see `steering_uses_reference`.
        """
        self.resolve_features([feature])
        with self.intercept(model, lambda tensor: self.steered(tensor, int(feature), float(factor), reference)):
            yield

    @abstractmethod
    def clamped(self, captured: torch.Tensor, feature: int, value: float) -> torch.Tensor:
        """A new module tensor in which `feature` is `value` at every position (an SAE keeps its reconstruction
        error); what output-centric explainers and scorers intervene with (never in place)."""

    @contextmanager
    def clamp(self, model: Any, feature: int, value: float) -> Iterator[None]:
        """While active, every forward holds `feature` at `value` at every position."""
        self.resolve_features([feature])
        with self.intercept(model, lambda tensor: self.clamped(tensor, int(feature), float(value))):
            yield

    def _probe_width(self, model: Any) -> int:
        probe = {"input_ids": torch.zeros((1, 1), dtype=torch.long, device=input_device(model))}
        return int(self.run_to_site(model, probe).shape[-1])


def _first_tensor(value: Any, site: FeatureSite) -> torch.Tensor:
    tensor = value[0] if isinstance(value, tuple) else value
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise SiteError(
            f"the {site.hook} of module {site.module_path} is a {type(tensor).__name__}"
            f"{'' if not isinstance(tensor, torch.Tensor) else f' of shape {tuple(tensor.shape)}'}, not a "
            "(batch, tokens, channels) tensor; pick a submodule such as an MLP activation or a decoder layer"
        )
    return tensor
