"""One typed config tree, loaded from YAML and validated once at the edge.

Every section rejects unknown keys and every registered name is checked (check_names), so a typo fails
before any work starts with the file, the key path and what is allowed. Defaults are the embedded offline setup (SmolLM2-135M, Python docs corpus, local
LLM) and, for FADE, the reference defaults of ../shared/FADE.md.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import JsonDict

from harness.errors import ConfigError
from harness.files import identity_hash
from harness.registry import (
    EMBEDDING_RATER,
    EXPLAINERS,
    IMPORTERS,
    RATERS,
    SAE_ACTIVATIONS,
    SCORERS,
    SITES,
    Registry,
)
from harness.score_names import FADE_SCORES
from harness.secrets import ENVIRONMENT_NAME, redact, redact_text, secret_paths

DEFAULT_CACHE_DIR = ".harness-cache"

# Result identity: every setting is part of the identity of what it produces (run skip/resume, the FADE
# result store, the activation and LLM caches, the explainer's settings hash, search trials) unless its
# field carries one of these markers (`json_schema_extra=`). `identity_payload` applies them; docs/tracking.md.
IDENTITY_MARKER = "identity"
_OPERATIONAL, _HELD_AT_DEFAULT, _AT_DEFAULT, _WHILE_DISABLED = (
    "operational",
    "operational-held-at-default",
    "omitted-at-default",
    "omitted-while-disabled",
)
# Changes how the work is done (speed, retries, where caches live, which address a server answers at, price
# bookkeeping), never what comes out: part of no identity.
OPERATIONAL: JsonDict = {IDENTITY_MARKER: _OPERATIONAL}
# Operational too, but run identities and explainer hashes made before it was declared so held its value: they
# hold its default instead, a constant, so that those made with it unset keep their identity (api_base).
OPERATIONAL_HELD_AT_DEFAULT: JsonDict = {IDENTITY_MARKER: _HELD_AT_DEFAULT}
# Part of the identity only when set to something other than its default, so that results made before the
# field existed keep their identity.
OMITTED_AT_DEFAULT: JsonDict = {IDENTITY_MARKER: _AT_DEFAULT}
# A section that is part of the identity only while it is enabled: its own `enabled` field is true, or (for a
# section without one) its name is listed in the `enabled` field of the section holding it. Results made
# before the section existed, or with it off, keep their identity.
OMITTED_WHILE_DISABLED: JsonDict = {IDENTITY_MARKER: _WHILE_DISABLED}


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def fingerprint(self) -> str:
        """Short hash of the section's result identity (`identity_payload`), for in-process keys."""
        return identity_hash(identity_payload(self))[:16]


def _identity_rule(field: Any) -> str | None:
    extra = field.json_schema_extra
    return extra.get(IDENTITY_MARKER) if isinstance(extra, dict) else None


def _disabled(name: str, section: BaseModel, holder: BaseModel) -> bool:
    """Whether an OMITTED_WHILE_DISABLED section is off (see that marker)."""
    if "enabled" in type(section).model_fields:
        return not getattr(section, "enabled")
    return name not in getattr(holder, "enabled")


def _identity_value(value: Any, dumped: Any, held: bool) -> Any:
    """`dumped` (the JSON form of `value`) with every section in it reduced to its identity payload."""
    if isinstance(value, BaseModel):
        return _section_payload(value, dumped, None, held)
    if isinstance(value, (list, tuple)) and any(isinstance(item, BaseModel) for item in value):
        return [_identity_value(item, item_dumped, held) for item, item_dumped in zip(value, dumped)]
    return dumped


def _section_payload(
    section: BaseModel, dumped: dict[str, Any], only: tuple[str, ...] | None, held: bool
) -> dict[str, Any]:
    fields = type(section).model_fields
    payload = {}
    for name in fields if only is None else only:
        field = fields[name]
        rule = _identity_rule(field)
        value = getattr(section, name)
        if rule == _HELD_AT_DEFAULT:
            if held:
                payload[name] = field.get_default(call_default_factory=True)
        elif not (
            rule == _OPERATIONAL
            or (rule == _AT_DEFAULT and value == field.get_default(call_default_factory=True))
            or (rule == _WHILE_DISABLED and _disabled(name, value, section))
        ):
            payload[name] = _identity_value(value, dumped[name], held)
    return payload


def identity_payload(section: BaseModel, only: tuple[str, ...] | None = None, *, held: bool = True) -> dict[str, Any]:
    """The section's result identity: its JSON dump without the fields its markers leave out, recursively.

    Every identity key hashes this (with `identity_hash`). `only` names the fields a key covers when its
    result reads part of the section (e.g. ACTIVATION_VALUE_SETTINGS); markers still apply to them.
    `held=False` leaves out OPERATIONAL_HELD_AT_DEFAULT fields too, for keys that never held them (the
    FADE result store's); either way their value changes nothing.
    """
    unknown = sorted(set(only or ()) - set(type(section).model_fields))
    if unknown:
        raise ValueError(f"{type(section).__name__} has no fields {unknown}")
    return _section_payload(section, section.model_dump(mode="json"), only, held)


def operational_fields(section_type: type[BaseModel]) -> frozenset[str]:
    """Names of the section's fields whose value is part of no identity (OPERATIONAL and OPERATIONAL_HELD_AT_DEFAULT)."""
    fields = section_type.model_fields
    return frozenset(
        name for name, field in fields.items() if _identity_rule(field) in (_OPERATIONAL, _HELD_AT_DEFAULT)
    )


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
    weights: Literal["trained", "random"] = Field(
        "trained",
        description="'random': the `random-model` control, the same architecture and tokenizer with every weight "
        "re-initialised (transformers' own initialisation, seeded by random_seed), so a score can be checked "
        "against a model that learnt nothing",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )
    random_seed: int = Field(
        0, description="seed of the re-initialisation (weights: random)", json_schema_extra=OMITTED_AT_DEFAULT
    )


class SAEConfig(StrictModel):
    """A sparse autoencoder read from local files."""

    path: str = Field(description="folder with cfg.json + sae_weights.safetensors (SAELens) or a params.npz")
    format: Literal["auto", "saelens", "gemmascope"] = "auto"
    activation: str = Field(
        "auto",
        description="'auto' (what the SAE's files say) or a registered SAE activation ('relu', 'jumprelu', 'topk')",
    )
    k: int | None = Field(None, ge=1, description="number of active latents for TopK SAEs")
    weights: Literal["trained", "random"] = Field(
        "trained",
        description="'random': the randomized control (docs/random-sae.md): an SAE of the same shapes with seeded "
        "random directions, each latent firing on as many corpus positions as the trained one (one extra pass)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )
    random_seed: int = Field(
        0,
        ge=0,
        description="seed of the random SAE's directions (weights: random)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )


MAX_FEATURE_INDEX = 2**63 - 1  # feature indices are int64 arrays from the site on


class FeatureRange(StrictModel):
    start: int = Field(0, ge=0, le=MAX_FEATURE_INDEX)
    stop: int = Field(ge=1, le=MAX_FEATURE_INDEX)

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
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="a plugin site kind's settings, validated at load by its `settings_model` (docs/architecture.md, "
        "Plugins)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )

    @field_validator("features")
    @classmethod
    def _non_negative_unique(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("the feature list is empty; give feature indices, a {start, stop} range or 'all'")
            if min(value) < 0:
                raise ValueError(f"feature indices must be >= 0, got {min(value)}")
            if max(value) > MAX_FEATURE_INDEX:
                raise ValueError(f"feature indices must be at most {MAX_FEATURE_INDEX} (int64), got {max(value)}")
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

    @property
    def reads_corpus(self) -> bool:
        """Whether building the site reads the run's corpus: a random SAE is calibrated on it (docs/random-sae.md),
        so the site then depends on the corpus and on the activation pass's position rules too."""
        return self.sae is not None and self.sae.weights == "random"


class ActivationConfig(StrictModel):
    """How the activation engine runs and what it keeps."""

    batch_size: int = Field(16, ge=1)
    max_length: int = Field(128, ge=2, description="tokens per sample fed to the model (longer ones are cut)")
    top_k: int = Field(20, ge=1, description="top-activating samples kept per feature, with per-token values")
    shard_size: int = Field(256, ge=1, description="samples per cache shard; an interrupted run resumes per shard")
    skip_special_tokens: bool = Field(False, description="ignore BOS/EOS/pad-like special tokens (FADE: False)")
    skip_first_positions: int = Field(0, ge=0, description="ignore the first N positions (attention sink)")
    early_exit: bool = Field(True, description="stop the forward pass right after the site's module")
    cache_dir: str = Field(DEFAULT_CACHE_DIR, json_schema_extra=OPERATIONAL)


# The activation settings each stored result reads (scopes of identity_payload; the run identity covers every
# field). Per-sample values, which FADE reads, depend on these; batch_size and early_exit change them in their last
# float bits at most (the batch's shape picks the matrix kernels), which the caches do not tell apart.
ACTIVATION_VALUE_SETTINGS = ("max_length", "skip_special_tokens", "skip_first_positions")
# The activation caches also hold the top examples (top_k) and are written shard by shard (shard_size).
ACTIVATION_CACHE_SETTINGS = (*ACTIVATION_VALUE_SETTINGS, "top_k", "shard_size")


class LLMConfig(StrictModel):
    """One LLM backend, addressed by a litellm model string. Keys come only from the environment."""

    model: str = Field("local/smollm2-135m", description="litellm model string, e.g. 'openai/gpt-4o-mini'")
    backend_id: str | None = Field(
        None,
        description="names the server behind the model string; set it when two servers answer under the same "
        "model string (e.g. two vLLM servers both serving openai/llama): it is part of every result identity, "
        "the LLM cache's key included, while api_base (an address, which can change) is part of none",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )
    api_base: str | None = Field(
        None,
        description="the server's address (vLLM, Ollama, any OpenAI-compatible server); part of no result "
        "identity, so a server that moves ports keeps its results and cached answers (see backend_id)",
        json_schema_extra=OPERATIONAL_HELD_AT_DEFAULT,
    )
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable that holds the key", json_schema_extra=OPERATIONAL
    )
    concurrency: int = Field(16, ge=1, json_schema_extra=OPERATIONAL)
    timeout_s: float = Field(60.0, gt=0, json_schema_extra=OPERATIONAL)
    max_retries: int = Field(6, ge=0, json_schema_extra=OPERATIONAL)
    max_invalid_retries: int = Field(
        2,
        ge=0,
        description="re-asks of an answer that fails validation (unparsable, missing ids)",
        json_schema_extra=OPERATIONAL,
    )
    backoff_base_s: float = Field(0.5, ge=0, json_schema_extra=OPERATIONAL)
    backoff_max_s: float = Field(
        30.0,
        ge=0,
        description="longest wait before a retry, a server's Retry-After included (also at most timeout_s)",
        json_schema_extra=OPERATIONAL,
    )
    max_answer_chars: int = Field(
        100_000,
        ge=1,
        description="a longer answer is an error (retried like a server error, then failed), never a result",
        json_schema_extra=OPERATIONAL,
    )
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(1024, ge=1)
    cache: bool = Field(True, json_schema_extra=OPERATIONAL)
    cache_path: str | None = Field(
        None, description="sqlite file; default <cache_dir>/llm-cache.sqlite", json_schema_extra=OPERATIONAL
    )
    input_cost_per_token: float | None = Field(
        None, ge=0, description="USD; overrides litellm's price map", json_schema_extra=OPERATIONAL
    )
    output_cost_per_token: float | None = Field(None, ge=0, json_schema_extra=OPERATIONAL)
    extra_params: dict[str, Any] = Field(default_factory=dict, description="more litellm.acompletion kwargs")
    structured_output: Literal["auto", "on", "off"] = Field(
        "auto",
        description="send each prompt's JSON schema as response_format: 'auto' where the backend takes one "
        "(the local model, models litellm knows to, self-hosted servers given by api_base), 'on' always, 'off' never",
    )
    transport: Literal["auto", "litellm", "openai"] = Field(
        "auto",
        description="how requests are sent: 'openai' through the openai SDK directly (an 'openai/' model: the "
        "OpenAI API, or with api_base any OpenAI-compatible server: vLLM, SGLang, llama.cpp), several times less "
        "client CPU per call than litellm; 'litellm' through litellm; 'auto' the SDK for an 'openai/' model with "
        "an api_base (a self-hosted server), litellm for everything else. Same answers and counts either way",
        json_schema_extra=OPERATIONAL,
    )

    @model_validator(mode="after")
    def _transport_fits_model(self) -> LLMConfig:
        if self.transport == "openai" and not self.model.startswith("openai/"):
            raise ValueError(
                f"transport 'openai' sends through the openai SDK, which serves 'openai/<model>' models only, not "
                f"{self.model!r}; use an 'openai/' model string (with api_base for an OpenAI-compatible server) or "
                "transport 'auto'"
            )
        return self

    @field_validator("extra_params")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        found = secret_paths(value)
        if found:
            raise ValueError(
                f"extra_params.{', extra_params.'.join(found)} looks like a secret; put secrets in an environment "
                "variable and name it in api_key_env"
            )
        return value

    @field_validator("api_base")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        if value is not None and redact_text(value) != value:
            raise ValueError(
                "api_base holds credentials (a user:password@ part or a key in the query); remove them, put the "
                "key in an environment variable and name it in api_key_env"
            )
        return value

    @field_validator("api_key_env")
    @classmethod
    def _a_variable_name(cls, value: str | None) -> str | None:
        # The value is not repeated: when it is not a name, it is most likely the key itself.
        if value is not None and not ENVIRONMENT_NAME.fullmatch(value):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits and _, e.g. "
                "OPENAI_API_KEY), never the key itself: export the key in that variable"
            )
        return value


# The LLM settings a cached answer is keyed by next to its request (a scope of identity_payload); the other
# result-changing ones are in the request itself: temperature, max_tokens, extra_params, and structured_output
# as the response_format it sends.
LLM_BACKEND_SETTINGS = ("model", "backend_id")


class FaithfulnessConfig(StrictModel):
    """FADE faithfulness (steering) settings; reference defaults."""

    enabled: bool = True
    num_samples: int = Field(50, ge=1, description="natural samples used as prompts")
    generation_length: int = Field(30, ge=1, description="new tokens per continuation (min = max)")
    generation_batch_size: int = Field(
        128, ge=1, description="(prompt, factor) rows per generate call; lower it when the model runs out of memory"
    )
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


EMBEDDING_RATER_PREFIX = f"{EMBEDDING_RATER}/"


class EmbeddingRaterConfig(StrictModel):
    """The embedding rater (`fade.rater.model: embedding/<encoder>`), a proxy for an LLM judge.

    It rates a text by the cosine similarity of its sentence embedding to the description's, against
    thresholds set per description by the similarities of `background_samples` natural corpus samples
    (docs/fade-deviations.md, R1): at or above the `rated_2_quantile` of those similarities a text is
    rated 2, at or above the `rated_1_quantile` 1, else 0; detection's "yes" is at or above `yes_quantile`.
    """

    background_samples: int = Field(256, ge=20, description="corpus samples that set each description's thresholds")
    rated_1_quantile: float = Field(0.7, gt=0, lt=1, description="similarity quantile of the background for rating 1")
    rated_2_quantile: float = Field(0.9, gt=0, lt=1, description="... for rating 2")
    yes_quantile: float = Field(
        0.5, gt=0, lt=1, description="... for a 'yes' of detection, which shows as many activating examples as not"
    )
    batch_size: int = Field(64, ge=1, description="texts per encoder forward pass")
    max_length: int = Field(128, ge=8, description="tokens kept per text")
    device: str = Field("auto", description="'auto' (cuda when present, else cpu), 'cpu', 'cuda', ...")
    seed: int = Field(0, description="which corpus samples form the background")

    @model_validator(mode="after")
    def _ordered(self) -> EmbeddingRaterConfig:
        if self.rated_1_quantile >= self.rated_2_quantile:
            raise ValueError("rated_1_quantile must be below rated_2_quantile")
        return self


# Registered raters whose settings are a section of FadeConfig, not `fade.rater_settings.<name>`: the embedding
# rater's section is older than rater settings, and stays where it is so that the runs made with it keep their
# identity (it is part of every run identity, at its defaults too). Its rater declares the section's class as
# its `settings_model`, like any other, and reads it through `harness.raters.rater_settings`.
RATER_SECTIONS = {EMBEDDING_RATER: "embedding_rater"}


# Concepts far from any corpus a harness user is likely to read features on (code, docs, web text), each a
# plain noun phrase; their synthetic samples are what "text written by the generator" looks like without
# the feature's concept. Documented in docs/clarity-floor.md.
CLARITY_FLOOR_CONCEPTS = (
    "cooking recipes and kitchen ingredients",
    "football matches and their players",
    "birds, their nests and their songs",
    "medieval castles and knights",
    "weather, rain and the seasons",
)


class ClarityFloorConfig(StrictModel):
    """Clarity of unrelated descriptions on the same feature and corpus: how high Clarity is for text the
    generator writes about anything (a feature that reacts to the generator's style scores high for all)."""

    enabled: bool = False
    concepts: list[str] = Field(
        default_factory=lambda: list(CLARITY_FLOOR_CONCEPTS),
        min_length=2,
        description="unrelated concepts whose Clarity on each feature is its floor (their synthetic samples are "
        "generated once and shared by every feature and variant)",
    )
    beats_at_z: float = Field(
        2.0, gt=0, description="a feature's Clarity beats its floor when it is this many floor spreads above its mean"
    )

    @field_validator("concepts")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if any(not concept.strip() for concept in value) or len(set(value)) != len(value):
            raise ValueError("clarity_floor.concepts must be distinct, non-empty texts")
        return value


class FadeConfig(StrictModel):
    """FADE settings; every default is the reference's (../shared/FADE.md)."""

    rater: LLMConfig = Field(
        default_factory=LLMConfig,
        description="who rates texts for a description (FADE and the other scorers): a litellm model string, "
        "or 'embedding/<encoder>' for the embedding rater, a proxy for an LLM judge",
    )
    generator: LLMConfig | None = Field(
        None, description="the LLM that writes Clarity's synthetic samples; default: fade.rater (must be an LLM)"
    )
    embedding_rater: EmbeddingRaterConfig = Field(
        default_factory=EmbeddingRaterConfig, description="the embedding rater's settings (its `settings_model`)"
    )
    rater_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="a plugin rater's settings, under its registered name (the provider part of fade.rater.model); "
        "validated at load by the rater's `settings_model` (docs/architecture.md, A rater)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )
    clarity_llm_calls: int = Field(15, ge=1)
    generation_temperature: float = Field(
        1.0, ge=0, description="temperature of the clarity generation calls (the reference: the provider default)"
    )
    generation_max_samples: int | None = Field(
        None,
        ge=1,
        description="most synthetic samples in one generation answer's schema (None: unbounded, as "
        "the reference); with generation_max_chars it keeps a small generator's answer inside its max_tokens",
    )
    generation_max_chars: int | None = Field(None, ge=1, description="most characters of one synthetic sample")
    num_samples: int = Field(500, ge=1, description="natural samples rated for responsiveness/purity")
    percentiles: list[float] = Field(default_factory=lambda: [0.0, 50.0, 75.0, 95.0, 100.0])
    top_share: float = Field(0.1, ge=0, le=1, description="rating_top_sampling_percentage")
    rating_batch_size: int = Field(15, ge=1)
    max_failed_retries: int = Field(1, ge=0)
    retry_sparse_threshold: int = Field(15, ge=0)
    max_sparse_retries: int = Field(1, ge=0)
    gini_threshold: float = Field(0.5, ge=0, le=1)
    faithfulness: FaithfulnessConfig = Field(default_factory=FaithfulnessConfig)
    clarity_floor: ClarityFloorConfig = Field(
        default_factory=ClarityFloorConfig, json_schema_extra=OMITTED_WHILE_DISABLED
    )
    seed: int = 0

    @field_validator("percentiles")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if len(value) < 2 or any(b <= a for a, b in zip(value, value[1:])) or value[0] < 0 or value[-1] > 100:
            raise ValueError("percentiles must be at least two strictly increasing values within [0, 100]")
        return value

    @model_validator(mode="after")
    def _generator_writes(self) -> FadeConfig:
        if self.generation_llm.model.startswith(EMBEDDING_RATER_PREFIX):
            raise ValueError(
                f"{'generator' if self.generator else 'rater'} {self.generation_llm.model!r} is an embedding "
                "rater, which writes no text; set fade.generator to an LLM (e.g. {model: local/smollm2-135m}) "
                "for Clarity's synthetic samples"
            )
        return self

    @model_validator(mode="after")
    def _rater_sections_where_they_are(self) -> FadeConfig:
        moved = [f"fade.{RATER_SECTIONS[name]}" for name in sorted(self.rater_settings) if name in RATER_SECTIONS]
        if moved:
            raise ValueError(f"rater_settings names a rater whose settings are {', '.join(moved)}; give them there")
        return self

    def given_rater_settings(self, name: str) -> tuple[str, dict[str, Any]]:
        """The registered rater `name`'s settings as the config gives them, and their dotted key path: its
        section of FadeConfig (RATER_SECTIONS), else `fade.rater_settings.<name>` (empty when not given)."""
        section = RATER_SECTIONS.get(name)
        if section is not None:
            return f"fade.{section}", getattr(self, section).model_dump()
        return f"fade.rater_settings.{name}", self.rater_settings.get(name, {})

    @property
    def generation_llm(self) -> LLMConfig:
        """The LLM that writes Clarity's synthetic samples."""
        return self.generator or self.rater


class ScorerExamplesConfig(StrictModel):
    """Which examples a scorer shows per feature: activating ones and non-activating (least active) ones.

    Shares are of the feature's largest token activation; examples between the two thresholds are not used,
    so a weakly active example is never labelled either way.
    """

    num_examples: int = Field(20, ge=2, le=200, description="examples per feature, both kinds together")
    non_activating_share: float = Field(0.5, gt=0, lt=1, description="share of the examples that are non-activating")
    strategy: Literal["top", "stratified", "random"] = Field(
        "stratified", description="how the activating examples are drawn (as in explain.selection.strategy)"
    )
    num_quantiles: int = Field(4, ge=1, le=50, description="activation quantile bins of the 'stratified' strategy")
    activating_above: float = Field(0.3, gt=0, le=1, description="activating: largest token activation >= this share")
    non_activating_below: float = Field(
        0.1, gt=0, le=1, description="non-activating: largest token activation < this share"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _both_kinds(self) -> ScorerExamplesConfig:
        non_activating = round(self.num_examples * self.non_activating_share)
        if not 1 <= non_activating < self.num_examples:
            raise ValueError(
                f"num_examples={self.num_examples} with non_activating_share={self.non_activating_share} leaves "
                "no activating or no non-activating example; raise num_examples or move the share towards 0.5"
            )
        if self.non_activating_below > self.activating_above:
            raise ValueError(
                f"non_activating_below ({self.non_activating_below}) must not exceed activating_above "
                f"({self.activating_above}): an example would be both"
            )
        return self

    @property
    def num_non_activating(self) -> int:
        return round(self.num_examples * self.non_activating_share)

    @property
    def num_activating(self) -> int:
        return self.num_examples - self.num_non_activating


class LLMScorerConfig(ScorerExamplesConfig):
    """What every scorer that asks the rater shares: whether to ask for token log-probabilities."""

    logprobs: Literal["auto", "on", "off"] = Field(
        "auto",
        description="ask the rater for token log-probabilities (AUROC for detection and fuzzing, expected "
        "values for simulation): 'auto' when litellm says the backend takes them, 'on' always, 'off' never",
    )
    top_logprobs: int = Field(10, ge=1, le=20, description="alternatives per answer token (OpenAI allows 20)")


class DetectionConfig(LLMScorerConfig):
    """Detection scorer: the rater says which unmarked examples show the description."""

    batch_size: int = Field(5, ge=1, le=50, description="examples per rater call")


class FuzzingConfig(LLMScorerConfig):
    """Fuzzing scorer: the rater says whether an example's highlighted tokens match the description."""

    batch_size: int = Field(5, ge=1, le=50, description="examples per rater call")
    highlight_threshold: float = Field(
        0.3, gt=0, le=1, description="tokens at least this share of the feature's max are highlighted (correctly)"
    )
    wrong_examples: Literal["non-activating", "activating"] = Field(
        "non-activating",
        description="wrongly highlighted examples: non-activating ones with random tokens highlighted (delphi's "
        "default), or the activating ones with the highlights moved to inactive tokens (delphi's 'active')",
    )


class SimulationConfig(LLMScorerConfig):
    """Simulation scorer: the rater predicts each token's activation (0-10) from the description."""

    num_examples: int = Field(10, ge=2, le=200, description="examples per feature, one rater call each")


class EmbeddingConfig(ScorerExamplesConfig):
    """Embedding scorer: how similar the description is to activating vs non-activating examples (no LLM)."""

    model: str = Field("all-minilm-l6-v2", description="embedded sentence-embedding model name or a local folder")
    batch_size: int = Field(64, ge=1, description="texts per forward pass")
    max_length: int = Field(256, ge=8, description="tokens kept per text")
    device: str = Field("auto", description="'auto' (cuda when present, else cpu), 'cpu', 'cuda', 'cuda:1', ...")


class IntruderConfig(StrictModel):
    """Intruder scorer (Paulo & Belrose 2025): the rater picks the one non-activating example hidden among
    activating ones. No description is shown, so its answers are the same for every variant of a site."""

    num_trials: int = Field(10, ge=1, le=100, description="trials per feature, one rater call each")
    num_activating: int = Field(4, ge=2, le=20, description="activating examples shown per trial, next to one intruder")
    num_quantiles: int = Field(
        4, ge=1, le=50, description="activation quantile bins; trial i shows the activating examples of bin i mod bins"
    )
    activating_above: float = Field(0.3, gt=0, le=1, description="activating: largest token activation >= this share")
    non_activating_below: float = Field(
        0.1, gt=0, le=1, description="intruders: examples whose largest token activation is < this share"
    )
    highlight: bool = Field(
        True,
        description="mark the activating tokens <<like this>> and as many random tokens of the intruder (delphi); "
        "False shows the examples unmarked",
    )
    highlight_threshold: float = Field(
        0.3, gt=0, le=1, description="tokens at least this share of the feature's max are marked (with highlight)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> IntruderConfig:
        if self.non_activating_below > self.activating_above:
            raise ValueError(
                f"non_activating_below ({self.non_activating_below}) must not exceed activating_above "
                f"({self.activating_above}): an intruder could be an activating example"
            )
        return self

    @property
    def num_non_activating(self) -> int:
        """Non-activating examples per feature: one intruder per trial (least_active_needed reads it)."""
        return self.num_trials


class DelphiConventionConfig(StrictModel):
    """The delphi convention's counts, at eai-delphi 0.1.3's defaults (delphi/config.py:11-52, delphi/__main__.py's
    `num_examples_per_scorer_prompt`); change one only to match a delphi run that changed it (docs/scorers/detection.md)."""

    example_ctx_len: int = Field(32, ge=2, le=1024, description="tokens per window (ConstructorConfig.example_ctx_len)")
    min_examples: int = Field(
        200, ge=1, description="features with fewer active windows are not scored (ConstructorConfig.min_examples)"
    )
    n_examples_test: int = Field(50, ge=1, description="activating test windows (SamplerConfig.n_examples_test)")
    n_quantiles: int = Field(10, ge=1, description="equal rank slices they are drawn from (SamplerConfig.n_quantiles)")
    n_non_activating: int = Field(50, ge=0, description="random inactive windows (ConstructorConfig.n_non_activating)")
    n_examples_shown: int = Field(
        5, ge=1, le=50, description="examples per rater call (num_examples_per_scorer_prompt)"
    )


class SAEBenchConfig(StrictModel):
    """SAEBench's autointerp score (sae-bench 0.6.0), at its defaults (sae_bench/evals/autointerp/eval_config.py);
    change one only to match a SAEBench run that changed it (docs/scorers/saebench.md)."""

    buffer: int = Field(10, ge=1, le=100, description="tokens either side of an example's centre token")
    no_overlap: bool = Field(True, description="top examples never within `buffer` of each other in one sample")
    act_threshold_frac: float = Field(
        0.01, gt=0, le=1, description="a scoring example is active above this share of the top examples' max"
    )
    n_top_ex_for_scoring: int = Field(2, ge=0, description="top examples the judge sees")
    n_iw_sampled_ex_for_scoring: int = Field(2, ge=0, description="activation-weighted examples the judge sees")
    n_random_ex_for_scoring: int = Field(10, ge=0, description="random examples the judge sees (labelled inactive)")
    n_top_ex_for_generation: int = Field(10, ge=1, description="top examples drawn for the explainer")
    n_iw_sampled_ex_for_generation: int = Field(5, ge=0, description="activation-weighted ones drawn for the explainer")
    random_seed: int = Field(42, description="SAEBench's seed of every draw")

    @property
    def n_ex_for_scoring(self) -> int:
        return self.n_top_ex_for_scoring + self.n_iw_sampled_ex_for_scoring + self.n_random_ex_for_scoring

    @property
    def num_non_activating(self) -> int:
        """Least-active pool samples it needs (least_active_needed reads it): none, it draws its own."""
        return 0


class ScorersConfig(StrictModel):
    """Scorers other autointerp projects use, run next to FADE on the same descriptions (all off by default).

    The LLM scorers ask the FADE rater (fade.rater); the embedding scorer needs no LLM; the intruder scorer
    reads no description.
    """

    enabled: list[str] = Field(
        default_factory=list,
        description="registered scorers to run: 'detection', 'fuzzing', 'simulation', 'embedding', 'intruder', "
        "'saebench'",
    )
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    fuzzing: FuzzingConfig = Field(default_factory=FuzzingConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)
    intruder: IntruderConfig = Field(default_factory=IntruderConfig, json_schema_extra=OMITTED_WHILE_DISABLED)
    saebench: SAEBenchConfig = Field(default_factory=SAEBenchConfig, json_schema_extra=OMITTED_WHILE_DISABLED)
    convention: Literal["harness", "delphi"] = Field(
        "harness",
        description="how detection and fuzzing choose, show and count examples: 'harness' (ours) or 'delphi' "
        "(as eai-delphi 0.1.3 does by default; docs/scorers/detection.md, fuzzing.md)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )
    delphi: DelphiConventionConfig = Field(
        default_factory=DelphiConventionConfig,
        description="the delphi convention's counts (read only with convention: delphi)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="a plugin scorer's settings, under its registered name; validated at load by the scorer's "
        "`settings_model` (docs/architecture.md, Plugins)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )

    @field_validator("enabled")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"scorers listed twice: {repeated}")
        return value


class ExampleSelectionConfig(StrictModel):
    """Which activating examples an explainer is shown, and how much of each."""

    strategy: Literal["top", "stratified", "random", "saebench"] = Field(
        "top",
        description="'top': the highest-activating samples; 'stratified': evenly from activation quantile bins "
        "of the active samples; 'random': at random among the active samples; 'saebench': SAEBench's explainer "
        "examples (10 top + 5 activation-weighted 21-token windows, docs/scorers/saebench.md; num_examples unused)",
    )
    num_examples: int = Field(10, ge=1, le=200, description="activating examples shown per feature")
    num_quantiles: int = Field(4, ge=1, le=50, description="quantile bins of the 'stratified' strategy")
    contrast_examples: int = Field(0, ge=0, le=200, description="low/zero-activation examples shown as contrast")
    context_left: int | None = Field(None, ge=0, description="tokens kept left of the max token (None = all)")
    context_right: int | None = Field(None, ge=0, description="tokens kept right of the max token (None = all)")
    seed: int = 0


class ActivationDisplayConfig(StrictModel):
    """How an example's per-token activations are shown to the explainer."""

    mode: Literal["highlight", "values"] = Field(
        "highlight",
        description="'highlight': active tokens wrapped in <<...>>; 'values': one token per line with its "
        "activation normalised to 0-10",
    )
    highlight_threshold: float = Field(
        0.3, gt=0, le=1, description="highlight tokens whose activation is at least this share of the feature's max"
    )


class PromptConfig(StrictModel):
    """The LLM explainer's prompt and how one description is chosen from its answers."""

    template: str = Field(
        "delphi",
        description="built-in template ('plain', 'neuron-explainer', 'delphi', 'contrast') or a template file path",
    )
    num_candidates: int = Field(1, ge=1, le=20, description="independent answers asked per feature")
    choose: Literal["first", "most-common", "shortest"] = Field(
        "first", description="how the description is picked from the candidates"
    )


class TopTokensConfig(StrictModel):
    """The `top-tokens` baseline: no LLM, the most-activating tokens are the description."""

    num_tokens: int = Field(5, ge=1, le=50)


class ShuffledConfig(StrictModel):
    """The `shuffled` null control: each feature gets another feature's description."""

    base: str = Field("top-tokens", description="explainer whose descriptions are shuffled")
    seed: int = 0

    @field_validator("base")
    @classmethod
    def _not_itself(cls, value: str) -> str:
        if value == "shuffled":
            raise ValueError("shuffled.base cannot be 'shuffled'; name the explainer whose descriptions to shuffle")
        return value


# What output-centric explainers read: VocabProj's token lists, TokenChange's.
OutputEvidenceKind = Literal["vocab-proj", "token-change"]


class OutputEvidenceConfig(StrictModel):
    """What a feature does to the output, shown to output-centric explainers (Gur-Arieh et al. 2025;
    docs/explainers.md): its direction read through the unembedding (VocabProj) and the change of the logits
    when it is clamped (TokenChange). Defaults are the paper's."""

    combine: list[OutputEvidenceKind] = Field(
        default_factory=list,
        description="output evidence the 'llm' explainer shows next to its examples (the paper's ensemble in one "
        "prompt; use a template with {output_evidence}, e.g. 'ensemble')",
    )
    vocab_tokens: int = Field(50, ge=1, le=500, description="VocabProj: top and bottom tokens shown, each")
    token_change_tokens: int = Field(
        10, ge=1, le=100, description="TokenChange: top and bottom tokens of each clamp's mean logit change"
    )
    token_change_samples: int = Field(32, ge=1, le=4096, description="TokenChange: corpus samples run clamped")
    clamp_value: float = Field(10.0, gt=0, description="TokenChange: the feature is held at +value and at -value")
    seed: int = Field(0, description="TokenChange: which corpus samples are drawn")

    @field_validator("combine")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"output evidence listed twice: {value}")
        return value


class EnsembleConfig(StrictModel):
    """The `ensemble` explainer: its members' descriptions, joined (the paper's concatenation)."""

    members: list[str] = Field(
        default_factory=lambda: ["vocab-proj", "llm", "token-change"],
        min_length=2,
        description="registered explainers whose descriptions are joined, in this order",
    )

    @field_validator("members")
    @classmethod
    def _plain_members(cls, value: list[str]) -> list[str]:
        if "ensemble" in value or "shuffled" in value or len(set(value)) != len(value):
            raise ValueError(
                f"ensemble.members must be distinct explainers other than ensemble and shuffled, got {value}"
            )
        return value


class ImportConfig(StrictModel):
    """The `import` explainer: descriptions written elsewhere (FADE JSON, Neuronpedia, neuron-explainer, CSV)."""

    path: str | None = Field(None, description="the descriptions file")
    format: str = Field("auto", description="'fade', 'neuronpedia', 'neuron-explainer', 'csv' or 'auto'")
    select: dict[str, str] = Field(default_factory=dict, description="keep rows whose column equals the value")


class ExplainConfig(StrictModel):
    """One pipeline variant: an explainer and every setting that shapes its descriptions."""

    explainer: str = Field(
        "llm",
        description="registered explainer: 'llm', 'vocab-proj', 'token-change', 'ensemble', 'top-tokens', 'shuffled' "
        "or 'import'",
    )
    llm: LLMConfig = Field(default_factory=LLMConfig, description="the explainer LLM")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    selection: ExampleSelectionConfig = Field(default_factory=ExampleSelectionConfig)
    display: ActivationDisplayConfig = Field(default_factory=ActivationDisplayConfig)
    top_tokens: TopTokensConfig = Field(default_factory=TopTokensConfig)
    shuffled: ShuffledConfig = Field(default_factory=ShuffledConfig)
    imported: ImportConfig = Field(default_factory=ImportConfig)
    output: OutputEvidenceConfig = Field(default_factory=OutputEvidenceConfig, json_schema_extra=OMITTED_AT_DEFAULT)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig, json_schema_extra=OMITTED_AT_DEFAULT)
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="a plugin explainer's settings, under its registered name; validated at load by the "
        "explainer's `settings_model` (docs/architecture.md, Plugins)",
        json_schema_extra=OMITTED_AT_DEFAULT,
    )

    @model_validator(mode="after")
    def _import_needs_a_file(self) -> ExplainConfig:
        if self.explainer == "import" and not self.imported.path:
            raise ValueError("explainer 'import' needs explain.imported.path (the descriptions file)")
        return self


class TraceSampleConfig(StrictModel):
    """Which features' LLM calls a run keeps as traces (tracking.traces): at scale, a sample of them.

    Every call of the first `first_features` features and of a fixed `share` of the others; of the rest,
    only the calls that failed, were retried or answered invalidly. Calls about no single feature are kept.
    """

    first_features: int = Field(
        10, ge=0, description="every call of the first this many features a run asks about (in the run's order)"
    )
    share: float = Field(
        0.02,
        ge=0,
        le=1,
        description="every call of this share of the other features, picked by a hash of the feature id (the "
        "same features in every variant and run, so their traces compare); 1 keeps every feature's calls",
    )


class TrackingConfig(StrictModel):
    """Where and how runs are recorded (MLflow)."""

    experiment: str = Field("feature-harness", min_length=1)
    uri: str | None = Field(None, description="tracking URI; default MLFLOW_TRACKING_URI, else mlruns/mlflow.db")
    store_dir: str = Field("mlruns", description="folder of the default sqlite store and its artifacts")
    bootstrap_samples: int = Field(1000, ge=100, description="resamples for the 95% intervals of the means")
    plot_features: int = Field(3, ge=0, description="features that get per-feature plots in the run")
    paired_alpha: float = Field(
        0.05, gt=0, lt=1,
        description="level of the paired test of each variant vs the one ranked above (Holm-adjusted): "
        "not significant at it = tied",
    )  # fmt: skip
    paired_min_features: int = Field(
        10, ge=2, description="fewest features both variants define for a paired test; fewer: no test (no tie)"
    )
    traces: bool = Field(
        True,
        description="record every LLM call of a run (explainer, FADE, scorers; cached answers too) as an MLflow "
        "trace linked to the run: prompt, answer, feature, prompt kind, tokens, latency, cache hit (docs/tracking.md)",
    )
    trace_sample: TraceSampleConfig = Field(
        default_factory=TraceSampleConfig,
        description="which features' calls are kept as traces at scale; failed and retried calls always are",
    )


class VariantSpec(StrictModel):
    """One named variant: dotted-key overrides of the base config."""

    name: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)


class VariantsConfig(StrictModel):
    """Pipeline variants compared in one `harness run`: a grid of values and/or named variants."""

    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values; every combination")
    named: list[VariantSpec] = Field(default_factory=list, description="variants with a name and their overrides")

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, choices in value.items():
            if not choices:
                raise ValueError(f"grid axis {key!r} has no values")
        return value


class SearchParam(StrictModel):
    """One searched setting: `choices`, or a numeric range `low`..`high` (optional `step`, `log`)."""

    choices: list[Any] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> SearchParam:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices is empty; list at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices, or both low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        return self


class SearchObjective(StrictModel):
    """What a trial maximises: the aggregate the rankings show (weights as given, else theirs); optionally also
    minimise cost."""

    weights: dict[str, float] | None = Field(
        None,
        description="score name -> weight of the aggregate (harness.evaluate.aggregate); default: the rankings' "
        "(equal over the FADE scores the run computes)",
    )
    minimise: Literal["cost_usd", "tokens"] | None = Field(
        None, description="add a second objective (multi-objective search; reports the Pareto front)"
    )

    @field_validator("weights")
    @classmethod
    def _known_scores(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        known = set(FADE_SCORES)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown score(s) {unknown}; known: {sorted(known)}")
        if not value or sum(value.values()) <= 0:
            raise ValueError("weights must name at least one score with a positive total")
        return value


class SearchConfig(StrictModel):
    """An Optuna search over pipeline settings; each trial is one tracked run."""

    study_name: str | None = Field(None, description="default: the config's name")
    storage: str | None = Field(None, description="default: Optuna journal file in the store dir; or an RDB URL")
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: int = 0
    n_trials: int | None = Field(20, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    pruner: Literal["median", "none"] = "median"
    chunk_size: int = Field(5, ge=1, description="features evaluated between two pruning checks")
    objective: SearchObjective = Field(default_factory=SearchObjective)
    space: dict[str, SearchParam] = Field(default_factory=dict, description="dotted config key -> its range")
    heartbeat_s: int = Field(
        30,
        ge=1,
        le=3600,
        description="on an RDB storage: each trial's heartbeat; a trial silent for 4 heartbeats (its worker died) is "
        "failed by the next worker",
    )


class HarnessConfig(StrictModel):
    """The whole pipeline: corpus -> activations -> explain -> evaluate -> track."""

    name: str = Field("default", json_schema_extra=OPERATIONAL)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    model: SubjectModelConfig = Field(default_factory=SubjectModelConfig)
    site: SiteConfig = Field(default_factory=SiteConfig)
    activations: ActivationConfig = Field(default_factory=ActivationConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    fade: FadeConfig = Field(default_factory=FadeConfig)
    scorers: ScorersConfig = Field(default_factory=ScorersConfig, json_schema_extra=OMITTED_WHILE_DISABLED)
    # Where runs are recorded, and which runs a config expands to: no single run's result.
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, json_schema_extra=OPERATIONAL)
    variants: VariantsConfig = Field(default_factory=VariantsConfig, json_schema_extra=OPERATIONAL)
    search: SearchConfig = Field(default_factory=SearchConfig, json_schema_extra=OPERATIONAL)
    seed: int = 0


def _format_validation_error(error: ValidationError, source: str) -> str:
    return "\n".join([f"invalid config {source}:", *(f"  {line}" for line in _validation_problems(error))])


def _validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    """One 'dotted.key.path: what is wrong' line per problem; `prefix` is the path of what was validated."""
    lines = []
    for item in error.errors():
        path = ".".join([*filter(None, [prefix]), *(str(part) for part in item["loc"])]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `harness config show` for every key)"
        elif item["type"] == "literal_error":
            message = f"{message} (got {item.get('input')!r})"
        lines.append(f"{path}: {message}")
    return lines


def parse_config(data: dict[str, Any] | None, source: str = "<dict>") -> HarnessConfig:
    """Validate a plain mapping into a HarnessConfig; ConfigError names the key paths that are wrong."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"invalid config {source}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    _check_values(data, source)
    try:
        config = HarnessConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None
    check_names(config, source)
    check_plugin_settings(config, source)
    return config


MAX_CONFIG_VALUES = 100_000  # a config's values once YAML aliases are expanded; real ones hold a few hundred


def _check_values(data: dict[str, Any], source: str) -> None:
    """Refuse a config that expands to more than MAX_CONFIG_VALUES values (a few hundred bytes of nested YAML
    aliases can stand for billions, which validation and `config show` would expand), and NaN anywhere (it
    passes a number's bounds, e.g. in fade.percentiles); the walk stops at the limit, so it is quick."""
    stack: list[tuple[str, Any]] = [("", data)]
    count = 0
    while stack:
        path, value = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"invalid config {source}: it holds more than {MAX_CONFIG_VALUES} values once its YAML aliases "
                "(*name) are expanded; write the repeated parts out, or use variants"
            )
        if isinstance(value, float) and math.isnan(value):
            raise ConfigError(f"invalid config {source}: {path or '(top level)'} is NaN; give a number")
        if isinstance(value, dict):
            stack += [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{path}[{index}]", item) for index, item in enumerate(value)]


def check_names(config: HarnessConfig, source: str = "<dict>") -> None:
    """Raise one ConfigError listing every setting that names no registered object, with its key path.

    Only harness.registry is read, so the check imports none of what the names stand for (no model or
    LLM library). A setting is checked where the code that reads it takes its value as a registry name:
    'auto' of an import format or SAE activation asks for detection instead. Two settings hold registry
    names only when registered, so nothing there can be unknown: `corpus.source` (otherwise a file or a
    Hugging Face dataset id) and `fade.rater.model` (a provider that is not a registered rater is an LLM).
    """
    named: list[tuple[str, Registry[Any], str | None]] = [
        ("site.kind", SITES, config.site.kind),
        ("explain.explainer", EXPLAINERS, config.explain.explainer),
        ("explain.shuffled.base", EXPLAINERS, config.explain.shuffled.base),
        *(
            (f"explain.ensemble.members[{index}]", EXPLAINERS, name)
            for index, name in enumerate(config.explain.ensemble.members)
        ),
        ("explain.imported.format", IMPORTERS, IMPORTERS.chosen(config.explain.imported.format)),
        *((f"scorers.enabled[{index}]", SCORERS, name) for index, name in enumerate(config.scorers.enabled)),
    ]
    if config.site.sae is not None:
        named.append(("site.sae.activation", SAE_ACTIVATIONS, SAE_ACTIVATIONS.chosen(config.site.sae.activation)))
    problems = [
        f"  {key}: {problem}"
        for key, registry, name in named
        if name is not None and (problem := registry.unknown(name)) is not None
    ]
    if problems:
        raise ConfigError("\n".join([f"invalid config {source}:", *problems]))


def plugin_settings(registered: Any, given: dict[str, Any], where: str) -> BaseModel:
    """A plugin's settings: `given` validated by the pydantic model its class declares (`settings_model`).

    Raises:
        ConfigError: the class declares no settings model, or `given` does not fit it; one line per problem,
            each with its dotted key path (`where` is the path of `given`, e.g. "scorers.settings.overlap").
    """
    model = getattr(registered, "settings_model", None)
    if model is None:
        raise ConfigError(
            f"{where}: {registered.__module__}:{registered.__qualname__} declares no settings_model, so it "
            "takes no settings here; remove the key"
        )
    try:
        return model.model_validate(given)
    except ValidationError as error:
        raise ConfigError("\n".join(_validation_problems(error, where))) from None


def check_plugin_settings(config: HarnessConfig, source: str = "<dict>") -> None:
    """Validate the plugin settings (`scorers.settings`, `explain.settings`, `fade.rater_settings`, `site.settings`)
    by each named class's `settings_model`; only the classes named there are imported. One ConfigError with every
    problem's path."""
    named: list[tuple[str, Registry[Any], str, dict[str, Any]]] = [  # (key path, registry, name, settings)
        (f"{key}.{name}", registry, name, given)
        for key, registry, section in (
            ("scorers.settings", SCORERS, config.scorers.settings),
            ("explain.settings", EXPLAINERS, config.explain.settings),
            ("fade.rater_settings", RATERS, config.fade.rater_settings),
        )
        for name, given in section.items()
    ]
    if config.site.settings:  # one site kind per config: its settings are the section itself
        named.append(("site.settings", SITES, config.site.kind, config.site.settings))
    problems = []
    for where, registry, name, given in named:
        unknown = registry.unknown(name)
        if unknown is not None:
            problems.append(f"{where}: {unknown}")
            continue
        try:
            plugin_settings(registry.get(name), given, where)
        except ConfigError as error:
            problems += str(error).splitlines()
    if problems:
        raise ConfigError("\n".join([f"invalid config {source}:", *(f"  {line}" for line in problems)]))


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
        data = set_dotted(data or {}, dotted, value)
    return parse_config(data, source=str(path))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot override {dotted}: {part} is not a section")
    node[leaf] = value
    return data


def expand_variants(config: HarnessConfig) -> list[tuple[str, HarnessConfig]]:
    """The variants a config declares, each a full config (without `variants`), validated one by one.

    No variants declared -> one variant, the config itself, named after it.
    """
    base = config.model_dump(mode="json")
    base["variants"] = {}
    base["search"] = {}
    specs: list[tuple[str, dict[str, Any]]] = []
    if config.variants.grid:
        keys = list(config.variants.grid)
        for values in itertools.product(*(config.variants.grid[key] for key in keys)):
            name = ",".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in zip(keys, values))
            specs.append((name, dict(zip(keys, values))))
    specs += [(spec.name, spec.set) for spec in config.variants.named]
    if not specs:
        return [(config.name, parse_config(base))]
    names = [name for name, _ in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
    variants = []
    for name, overrides in specs:
        data = copy.deepcopy(base)
        for dotted, value in overrides.items():
            data = set_dotted(data, dotted, value)
        variants.append((name, parse_config(data, source=f"(variant {name!r})")))
    return variants


def control_counterpart(config: HarnessConfig) -> tuple[str, HarnessConfig] | None:
    """A randomized control's kind and the config of the variant it controls for (None for other variants).

    `random-model` (model.weights: random) and `random-sae` (site.sae.weights: random) control the same
    settings on the trained weights; `shuffled` controls the explainer whose descriptions it shuffles. The
    controls table (harness.track.controls) tests each against its counterpart; docs/controls.md.
    """
    data = config.model_dump(mode="json")
    if config.model.weights == "random":
        kind = "random-model"
        data["model"] |= {"weights": "trained", "random_seed": 0}
    elif config.site.sae is not None and getattr(config.site.sae, "weights", "trained") == "random":
        kind = "random-sae"
        data["site"]["sae"] |= {"weights": "trained", "random_seed": 0}
    elif config.explain.explainer == "shuffled":
        kind = "shuffled"
        data["explain"]["explainer"] = config.explain.shuffled.base
    else:
        return None
    return kind, parse_config(data, source=f"(the variant the {kind} control controls for)")


def result_fingerprint(config: HarnessConfig) -> str:
    """A run's identity: the hash of every setting that changes its results (`identity_payload`).

    A finished run with the same fingerprint is skipped, an unfinished one resumed (harness.track.runs).
    """
    return identity_hash(identity_payload(config))[:16]


def dump_config(config: HarnessConfig) -> str:
    """The resolved config as YAML (every default filled in), with anything secret-looking redacted."""
    return yaml.safe_dump(redact(config.model_dump(mode="json")), sort_keys=False)
