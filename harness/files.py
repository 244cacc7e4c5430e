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
