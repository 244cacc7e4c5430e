"""On-disk cache of LLM responses, keyed by (backend identity, messages, parameters).

sqlite in WAL mode: several processes can read and write the same file at once, every stored answer is
its own committed transaction, so a run killed at any moment leaves a valid file holding every answer
that finished. Only successful answers are stored; the caller decides what counts as one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CacheError
from harness.files import identity_hash
from harness.llm.types import Completion, TokenLogprobs

# Version 2 added the logprobs column; a version-1 file is upgraded in place, keeping its answers.
SCHEMA_VERSION = 2
KEY_VERSION = 1  # part of every key: bumping it would orphan every stored answer
_SET_UP_RETRY_S = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created REAL NOT NULL,
    logprobs TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class CachedResponse:
    """What a backend answered once, and what that answer cost then."""

    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    logprobs: tuple[TokenLogprobs, ...] | None = None

    @classmethod
    def of(cls, completion: Completion) -> CachedResponse:
        return cls(
            completion.model,
            completion.text,
            completion.prompt_tokens,
            completion.completion_tokens,
            completion.cost_usd,
            completion.logprobs,
        )


def _logprobs_json(logprobs: tuple[TokenLogprobs, ...] | None) -> str | None:
    if logprobs is None:
        return None
    return json.dumps([[token, dict(alternatives)] for token, alternatives in logprobs], ensure_ascii=False)


def _logprobs_of(text: str | None) -> tuple[TokenLogprobs, ...] | None:
    if text is None:
        return None
    return tuple((token, alternatives) for token, alternatives in json.loads(text))


def _is_busy(error: sqlite3.DatabaseError) -> bool:
    """Another connection holds a lock: the condition passes once that connection is done."""
    primary_code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # extended codes keep the primary in the low byte
    return primary_code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _upgrade_from_1(connection: sqlite3.Connection) -> str:
    """Add the logprobs column to a version-1 file, in one transaction (another process may race us)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(responses)")}
        if "logprobs" not in columns:
            connection.execute("ALTER TABLE responses ADD COLUMN logprobs TEXT")
        connection.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return str(SCHEMA_VERSION)


def cache_key(backend: dict[str, Any], messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """Stable hash of a request: same backend, messages and sampling parameters -> same key.

    `backend` is the LLM config's identity over LLM_BACKEND_SETTINGS (`{"model": ...}`, plus `backend_id`
    when set): the server's address is not part of it, so a server that moves ports keeps its answers.
    """
    return identity_hash({"v": KEY_VERSION, **backend, "messages": messages, "params": params}, ensure_ascii=False)


class ResponseCache:
    """A sqlite file of responses, shared safely by threads and processes.

    Args:
        path: the sqlite file; its folder is created when missing.
        busy_timeout_s: how long opening the file, or writing to it, waits for another process's lock.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # sqlite answers "database is locked" at once, without waiting out the busy timeout, to a connection that
        # switches a brand-new (empty) file to WAL while another process holds a lock on it: two runs opening a
        # fresh cache together. Such a lock is short, so set-up is tried again until the timeout runs out.
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                self._connection, version = self._open(busy_timeout_s)
                break
            except sqlite3.DatabaseError as error:
                if not (_is_busy(error) and time.monotonic() < deadline):
                    raise self._unusable(error) from error
                time.sleep(_SET_UP_RETRY_S)
        if int(version) != SCHEMA_VERSION:
            self._connection.close()
            raise CacheError(
                f"the LLM response cache {self.path} has schema version {version}, this harness writes "
                f"{SCHEMA_VERSION}; delete the file or point llm.cache_path elsewhere"
            )

    def _open(self, busy_timeout_s: float) -> tuple[sqlite3.Connection, str]:
        """Open the file in WAL mode and create or upgrade its tables: the connection and the schema version.

        Safe to repeat: a failed attempt closes its connection and leaves the file as another opener would.
        """
        connection = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a killed process (not a power cut), without an fsync per answer.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            connection.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            (version,) = connection.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            return connection, _upgrade_from_1(connection) if version == "1" else version
        except BaseException:
            connection.close()
            raise

    def _unusable(self, error: sqlite3.DatabaseError) -> CacheError:
        if _is_busy(error):
            return CacheError(
                f"the LLM response cache {self.path} stayed locked by another process for the whole busy timeout "
                f"({error}); wait for that run to finish, or set llm.cache_path to another file"
            )
        return CacheError(
            f"the LLM response cache {self.path} cannot be opened ({error}); "
            "delete the file (answers will be asked again) or set llm.cache_path to another file"
        )

    def get(self, key: str) -> CachedResponse | None:
        with self._lock, self._damage():
            row = self._connection.execute(
                "SELECT model, text, prompt_tokens, completion_tokens, cost_usd, logprobs FROM responses WHERE key = ?",
                (key,),
            ).fetchone()
        return CachedResponse(*row[:5], _logprobs_of(row[5])) if row else None

    @contextmanager
    def _damage(self) -> Iterator[None]:
        """A page found damaged after the file opened (a disk fault, a copy cut short) as one clear error."""
        try:
            yield
        except sqlite3.DatabaseError as error:
            if _is_busy(error):
                raise self._unusable(error) from None
            raise CacheError(
                f"the LLM response cache {self.path} is damaged ({error}); delete the file (answers will be "
                "asked again) or set llm.cache_path to another file"
            ) from None

    def put(self, key: str, response: CachedResponse) -> None:
        with self._lock, self._damage():
            self._connection.execute(
                "INSERT OR REPLACE INTO responses "
                "(key, model, text, prompt_tokens, completion_tokens, cost_usd, created, logprobs) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    response.model,
                    response.text,
                    response.prompt_tokens,
                    response.completion_tokens,
                    response.cost_usd,
                    time.time(),
                    _logprobs_json(response.logprobs),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection.execute("SELECT COUNT(*) FROM responses").fetchone()
        return count

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
