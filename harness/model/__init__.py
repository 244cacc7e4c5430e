"""Subject model loading (hub id, local folder, or the embedded GGUF default)."""

from harness.model.loader import (
    EMBEDDED_MODELS,
    LoadedModel,
    installed_package_folder,
    load_subject_model,
    resolve_device,
)

__all__ = ["EMBEDDED_MODELS", "LoadedModel", "installed_package_folder", "load_subject_model", "resolve_device"]
