"""One typed config tree, loaded from YAML and validated once at the edge.

Every section rejects unknown keys, so a typo fails before any work starts with the file, the key path
and what is allowed. Defaults are the embedded offline setup (SmolLM2-135M, Python docs corpus, local
LLM) and, for FADE, the reference defaults of ../shared/FADE.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError

DEFAULT_CACHE_DIR = ".harness-cache"
_SECRET_KEYS = {"api_key", "token", "secret", "password", "authorization", "headers", "extra_headers"}


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def fingerprint(self) -> str:
        """Stable short hash of the settings, for cache keys and run identity."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class CorpusConfig(StrictModel):
    """Where the natural text samples come from and how they are cut."""

    source: str = Field(
        "python-docs",
        description="embedded corpus name ('python-docs'), a local json/jsonl/csv/parquet/txt file, "
        "or a Hugging Face dataset id",
    )
    split: str = "train"
    text_column: str = "text"
    num_samples: int | None = Field(1000, ge=1, description="keep at most this many samples (None = all)")
    max_chars: int | None = Field(250, ge=1, description="cut each sample to this many characters")
    max_tokens: int | None = Field(None, ge=1, description="cut each sample to this many tokens")
    min_chars: int = Field(20, ge=0, description="drop samples shorter than this after cutting")
    deduplicate: bool = True
    shuffle: bool = True
    seed: int = 0


class SubjectModelConfig(StrictModel):
    """The language model whose features are described."""

    name: str = Field("smollm2-135m", description="embedded model name, Hugging Face hub id or local folder")
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "float32"
    device: str = Field("auto", description="'auto' (cuda when present, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    device_map: str | None = Field(None, description="accelerate device_map, e.g. 'auto' to shard a big model")


class SAEConfig(StrictModel):
    """A sparse autoencoder read from local files."""

    path: str = Field(description="folder with cfg.json + sae_weights.safetensors (SAELens) or a params.npz")
    format: Literal["auto", "saelens", "gemmascope"] = "auto"
    activation: Literal["auto", "relu", "jumprelu", "topk"] = "auto"
    k: int | None = Field(None, ge=1, description="number of active latents for TopK SAEs")


class FeatureRange(StrictModel):
    start: int = Field(0, ge=0)
    stop: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> FeatureRange:
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be greater than start ({self.start})")
        return self


class SiteConfig(StrictModel):
    """Where the features live: a module of the subject model, read as neurons or through an SAE."""

    kind: str = Field("neuron", description="registered site kind: 'neuron' or 'sae'")
    module: str = Field("model.layers.15.mlp.act_fn", description="dotted module path inside the model")
    hook: Literal["output", "input"] = Field("output", description="read the module's output or its input")
    sae: SAEConfig | None = None
    features: list[int] | FeatureRange | Literal["all"] = "all"

    @field_validator("features")
    @classmethod
    def _non_negative_unique(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("the feature list is empty; give feature indices, a {start, stop} range or 'all'")
            if min(value) < 0:
                raise ValueError(f"feature indices must be >= 0, got {min(value)}")
            if len(set(value)) != len(value):
                raise ValueError("feature indices must be unique")
        return value

    @model_validator(mode="after")
    def _sae_matches_kind(self) -> SiteConfig:
        if self.kind == "sae" and self.sae is None:
            raise ValueError("site kind 'sae' needs an 'sae:' section with the SAE's path")
        if self.kind == "neuron" and self.sae is not None:
            raise ValueError("site kind 'neuron' takes no 'sae:' section; use kind: sae")
        return self


class ActivationConfig(StrictModel):
    """How the activation engine runs and what it keeps."""

    batch_size: int = Field(16, ge=1)
    max_length: int = Field(128, ge=2, description="tokens per sample fed to the model (longer ones are cut)")
    top_k: int = Field(20, ge=1, description="top-activating samples kept per feature, with per-token values")
    shard_size: int = Field(256, ge=1, description="samples per cache shard; an interrupted run resumes per shard")
    skip_special_tokens: bool = Field(False, description="ignore BOS/EOS/pad-like special tokens (FADE: False)")
    skip_first_positions: int = Field(0, ge=0, description="ignore the first N positions (attention sink)")
    early_exit: bool = Field(True, description="stop the forward pass right after the site's module")
    cache_dir: str = DEFAULT_CACHE_DIR


class LLMConfig(StrictModel):
    """One LLM backend, addressed by a litellm model string. Keys come only from the environment."""

    model: str = Field("local/smollm2-135m", description="litellm model string, e.g. 'openai/gpt-4o-mini'")
    api_base: str | None = None
    api_key_env: str | None = Field(None, description="NAME of the environment variable that holds the key")
    concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=1)
    cache: bool = True
    cache_path: str | None = Field(None, description="sqlite file; default <cache_dir>/llm-cache.sqlite")
    input_cost_per_token: float | None = Field(None, ge=0, description="USD; overrides litellm's price map")
    output_cost_per_token: float | None = Field(None, ge=0)
    extra_params: dict[str, Any] = Field(default_factory=dict, description="more litellm.acompletion kwargs")

    @field_validator("extra_params")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            lowered = key.lower()
            if lowered in _SECRET_KEYS or lowered.endswith(("_key", "_secret", "_password", "_token")):
                raise ValueError(
                    f"extra_params.{key} looks like a secret; put secrets in an environment variable "
                    "and name it in api_key_env"
                )
        return value


class FaithfulnessConfig(StrictModel):
    """FADE faithfulness (steering) settings; reference defaults."""

    enabled: bool = True
    num_samples: int = Field(50, ge=1, description="natural samples used as prompts")
    generation_length: int = Field(30, ge=1, description="new tokens per continuation (min = max)")
    modification_factors: list[float] = Field(default_factory=lambda: [-50.0, -10.0, -1.0, 0.0, 1.0, 10.0, 50.0])
    max_failed_retries: int = Field(1, ge=0)
    max_sparse_retries: int = Field(0, ge=0)
    retry_sparse_threshold: int = Field(20, ge=0)

    @field_validator("modification_factors")
    @classmethod
    def _with_baseline(cls, value: list[float]) -> list[float]:
        if not value:
            raise ValueError("modification_factors is empty")
        return sorted(set(value) | {0.0})


class FadeConfig(StrictModel):
    """FADE settings; every default is the reference's (../shared/FADE.md)."""

    rater: LLMConfig = Field(default_factory=LLMConfig)
    clarity_llm_calls: int = Field(15, ge=1)
    num_samples: int = Field(500, ge=1, description="natural samples rated for responsiveness/purity")
    percentiles: list[float] = Field(default_factory=lambda: [0.0, 50.0, 75.0, 95.0, 100.0])
    top_share: float = Field(0.1, ge=0, le=1, description="rating_top_sampling_percentage")
    rating_batch_size: int = Field(15, ge=1)
    max_failed_retries: int = Field(1, ge=0)
    retry_sparse_threshold: int = Field(15, ge=0)
    max_sparse_retries: int = Field(1, ge=0)
    gini_threshold: float = Field(0.5, ge=0, le=1)
    faithfulness: FaithfulnessConfig = Field(default_factory=FaithfulnessConfig)
    seed: int = 0

    @field_validator("percentiles")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if len(value) < 2 or any(b <= a for a, b in zip(value, value[1:])) or value[0] < 0 or value[-1] > 100:
            raise ValueError("percentiles must be at least two strictly increasing values within [0, 100]")
        return value


class HarnessConfig(StrictModel):
    """The whole pipeline: corpus -> activations -> explain -> evaluate -> track."""

    name: str = "default"
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    model: SubjectModelConfig = Field(default_factory=SubjectModelConfig)
    site: SiteConfig = Field(default_factory=SiteConfig)
    activations: ActivationConfig = Field(default_factory=ActivationConfig)
    fade: FadeConfig = Field(default_factory=FadeConfig)
    seed: int = 0


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `harness config show` for every key)"
        elif item["type"] == "literal_error":
            message = f"{message} (got {item.get('input')!r})"
        lines.append(f"  {path}: {message}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any] | None, source: str = "<dict>") -> HarnessConfig:
    """Validate a plain mapping into a HarnessConfig; ConfigError names the key paths that are wrong."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return HarnessConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> HarnessConfig:
    """Read a YAML config file; `overrides` are dotted keys (e.g. {'site.features': [1, 2]})."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; the ready configs are in configs/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    for dotted, value in (overrides or {}).items():
        data = _set_dotted(data or {}, dotted, value)
    return parse_config(data, source=str(path))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot override {dotted}: {part} is not a section")
    node[leaf] = value
    return data


def dump_config(config: HarnessConfig) -> str:
    """The resolved config as YAML (every default filled in)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
