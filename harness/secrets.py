"""What counts as a secret in a config, and how one that slipped in is kept out of everything written.

Keys come only from the environment (`llm.api_key_env` names the variable; without it litellm reads its
provider's own, e.g. OPENAI_API_KEY). The config refuses secrets by these rules at load; what goes to
MLflow, the config artifact, the leaderboard and error messages passes through `redact` / `redact_text` as
well, so a secret that got in some other way is not published. `redact_text` also removes the value of
every variable a key may be sent from (`key_values`), so a backend that echoes the key in an error or
reflects it into an answer does not get it stored or printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[redacted]"
# Compared with the key's letters and digits only, lower-cased: api_key, apiKey, API-KEY are one name.
_SECRET_NAMES = frozenset({"auth", "authorization", "cookie", "credentials", "headers", "extraheaders"})
_SECRET_ENDINGS = ("key", "secret", "password", "passwd", "token", "credential")
ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
_QUERY_PAIR = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;#\s]+)=(?P<value>[^&;#\s]*)")


MIN_KEY_LENGTH = 8  # shorter values of key-named variables ("1", "true") are not keys worth hunting in text
# Variables named by llm.api_key_env in this process: a key whatever its name says (see watch_key_variable).
_KEY_VARIABLES: set[str] = set()


def watch_key_variable(name: str | None) -> None:
    """Count the variable `name` (an llm.api_key_env) among those whose value is redacted from all text."""
    if name:
        _KEY_VARIABLES.add(name)


def key_values() -> list[str]:
    """The values of the environment variables a key may be sent from: those named by llm.api_key_env and
    every secret-named one (OPENAI_API_KEY, ANTHROPIC_API_KEY, AZURE_API_KEY, HF_TOKEN, ... whatever
    provider litellm falls back to); longest first, so a key holding another is removed whole."""
    names = _key_names(tuple(os.environ), frozenset(_KEY_VARIABLES))
    values = {value for name in names if len(value := os.environ.get(name, "")) >= MIN_KEY_LENGTH}
    return sorted(values, key=len, reverse=True)


@lru_cache(maxsize=16)
def _key_names(names: tuple[str, ...], watched: frozenset[str]) -> tuple[str, ...]:
    """The variables of key_values among `names` (judged once per set of names: every text passes here)."""
    return tuple(name for name in names if name in watched or is_secret_name(name))


def is_secret_name(name: str) -> bool:
    """Whether a key names a secret, in any spelling (api_key, apiKey, X-Api-Key, access_token, ...)."""
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    return normalised in _SECRET_NAMES or normalised.endswith(_SECRET_ENDINGS)


def secret_paths(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the secret-named keys at any depth of nested mappings and lists."""
    if isinstance(value, Mapping):
        found = []
        for key, item in value.items():
            path = f"{prefix}{key}"
            found += [path] if is_secret_name(str(key)) else secret_paths(item, f"{path}.")
        return found
    if isinstance(value, (list, tuple)):
        return [path for index, item in enumerate(value) for path in secret_paths(item, f"{prefix}{index}.")]
    return []


def redact_text(text: str) -> str:
    """Text with the credentials of every URL in it removed (a `user:password@` part, secret query values)
    and every key the process could send (key_values) replaced."""

    def query_pair(match: re.Match[str]) -> str:
        if not is_secret_name(match["name"]):
            return match[0]
        return f"{match['lead']}{match['name']}={REDACTED}"

    return _QUERY_PAIR.sub(query_pair, _URL_USERINFO.sub(r"\g<scheme>", scrub_keys(text)))


def scrub_keys(text: str) -> str:
    """Text with every key the process could send (key_values) replaced: for text from a backend, which may
    reflect the key it was sent, before it is stored or published."""
    for value in key_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(value: Any) -> Any:
    """A copy of nested mappings and lists with secret-named keys' values replaced and URLs cleaned.

    A flat mapping of dotted keys (MLflow params) is judged by each key's last part.
    """
    if isinstance(value, Mapping):
        return {
            key: REDACTED if item not in (None, "") and is_secret_name(str(key).rsplit(".", 1)[-1]) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return redact_text(value) if isinstance(value, str) else value
