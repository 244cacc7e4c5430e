"""Exceptions of our own, so the CLI can print them plainly and tests can match them.

Every message says what is wrong, where (file, key, module path, feature index…) and how to fix it.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose (bad input, missing resource, ...)."""


class ConfigError(HarnessError):
    """A config file or value is invalid."""


class CorpusError(HarnessError):
    """The corpus cannot be loaded or is empty/invalid."""


class ModelLoadError(HarnessError):
    """The subject model (or its tokenizer) cannot be loaded."""


class SiteError(HarnessError):
    """A feature site is wrong: unknown module path, feature out of range, SAE shape mismatch."""


class CacheError(HarnessError):
    """A cache file is unusable in a way we cannot repair automatically."""


class LLMError(HarnessError):
    """An LLM call failed for good (retries exhausted, auth, bad model string)."""


class OutputError(HarnessError):
    """An output folder (results, tables, the store, caches) cannot be written."""


class EvaluationError(HarnessError):
    """An evaluation input is invalid (e.g. a descriptions table with unknown features)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (the CLI's handler), so a run ends KILLED with its reason like
    Ctrl-C instead of staying RUNNING."""


class HarnessWarning(UserWarning):
    """Base of the warnings the harness gives on purpose; the CLI prints them as plain text, without source."""
