"""Model loading: the subject model (hub id, local folder, or the embedded GGUF default) and sentence encoders."""

from harness.model._encoder import EMBEDDED_ENCODERS, EmbeddedEncoder, SentenceEncoder, encoder_folder, load_encoder
from harness.model._loader import (
    EMBEDDED_MODELS,
    LoadedModel,
    installed_package_folder,
    load_subject_model,
    resolve_device,
)

__all__ = [
    "EMBEDDED_ENCODERS",
    "EMBEDDED_MODELS",
    "EmbeddedEncoder",
    "LoadedModel",
    "SentenceEncoder",
    "encoder_folder",
    "installed_package_folder",
    "load_encoder",
    "load_subject_model",
    "resolve_device",
]
