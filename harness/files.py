"""Files every stage writes the same way: atomically (a crash never leaves a half-written file), named
by the hash of what determines their content (so a changed input never reads a stale cache entry), and
set up by one process at a time where several may start together (a lock file)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def identity_hash(material: Any, *, ensure_ascii: bool = True) -> str:
    """sha256 (hex) of the canonical JSON of what determines a result: the one hash every key is made with.

    Callers that keep a short key take its first 16 characters. `ensure_ascii=False` writes non-ASCII text as
    itself instead of \\u escapes; the LLM response cache's keys were made so, and keep that form so that
    stored answers keep their keys.
    """
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii)
    return hashlib.sha256(text.encode()).hexdigest()


def check_writable(folder: Path, what: str) -> None:
    """Raise OutputError unless a file can be written in `folder` (created when missing): checked before the
    work (LLM calls included) whose results would go there.

    Args:
        folder: the output folder.
        what: what goes there and the setting or option naming it, for the message.
    """
    from harness.errors import OutputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise OutputError(
            f"cannot write {what} to {folder}: {error.strerror or error}; choose a writable folder (or free some space)"
        ) from None


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A CSV cell a spreadsheet would run as a formula (CSV injection) quoted with a leading '; others as given."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def csv_unsafe(value: str) -> str:
    """A CSV cell as it was before csv_safe quoted it (what the harness reads back from its own CSVs)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: Path, waiting: str | None = None) -> Iterator[None]:
    """Hold the lock file `path` (created when missing) exclusively: one process at a time, across processes.

    The lock is released when the holder exits the block or dies, so a killed process never leaves it stuck.
    `waiting`: a warning given when another process holds the lock, before waiting for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if waiting else 0))
        except BlockingIOError:
            from harness.errors import HarnessWarning

            warnings.warn(str(waiting), HarnessWarning, stacklevel=3)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
