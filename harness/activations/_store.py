"""A cache folder of array files plus a JSON manifest that names them with their sha256.

Every file is written to a temporary name and moved into place with os.replace, and the manifest is
written last, so a crash leaves either the previous state or the new one. A folder whose manifest is
unreadable, belongs to another key, or lists a file that is missing, truncated or altered is wiped
and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import file_lock, write_atomic

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


class CacheCorrupt(Exception):
    """A cache file does not match its manifest (internal: the store rebuilds)."""


class ArrayStore:
    """One cache entry: a folder named after its key, holding npz files and a manifest.

    Args:
        folder: the entry's folder (created on the first write only).
        key: the full cache key; stored in the manifest and inside every file.
    """

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest when the entry exists and is this key's; None when absent (after wiping a bad one)."""
        path = self.folder / MANIFEST
        if not path.exists():
            if self.folder.exists():
                self.wipe("it has no manifest")
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            self.wipe(f"its manifest is unreadable ({error})")
            return None
        if manifest.get("key") != self.key:
            self.wipe(f"its manifest belongs to another key ({str(manifest.get('key'))[:16]}...)")
            return None
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_atomic(self.folder / MANIFEST, json.dumps({**manifest, "key": self.key}, indent=1).encode())

    def write_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> dict[str, str]:
        """Write `arrays` as `name` (npz) and return its manifest entry {file, sha256}."""
        buffer = io.BytesIO()
        np.savez(buffer, cache_key=np.array(self.key), **arrays)
        data = buffer.getvalue()
        write_atomic(self.folder / name, data)
        return {"file": name, "sha256": hashlib.sha256(data).hexdigest()}

    def read_arrays(self, entry: dict[str, str]) -> dict[str, np.ndarray]:
        """The arrays of a manifest entry; CacheCorrupt when the file is missing, altered or foreign."""
        try:
            data = (self.folder / entry["file"]).read_bytes()
        except (OSError, KeyError, TypeError) as error:
            raise CacheCorrupt(f"{entry!r} cannot be read: {error}") from error
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise CacheCorrupt(f"{entry['file']} does not match its checksum (truncated or altered)")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        if str(arrays.pop("cache_key", "")) != self.key:
            raise CacheCorrupt(f"{entry['file']} belongs to another cache key")
        return arrays

    def remove_unlisted(self, listed: set[str]) -> None:
        """Delete leftovers of an interrupted write (files the manifest does not name)."""
        for path in self.folder.iterdir() if self.folder.exists() else ():
            if path.name != MANIFEST and path.name not in listed:
                path.unlink(missing_ok=True)

    def remove(self, name: str) -> None:
        (self.folder / name).unlink(missing_ok=True)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold this entry for one process at a time (a lock file in the cache's `locks` folder).

        Two processes building the same entry at once (search workers starting together on a cold cache)
        would otherwise take each other's half-written folder for a damaged one and wipe it. The lock lives
        outside the entry, which a wipe deletes.
        """
        with file_lock(self.folder.parent.parent / "locks" / f"{self.folder.parent.name}-{self.folder.name}.lock"):
            yield

    def wipe(self, reason: str) -> None:
        logger.warning("activation cache %s is unusable (%s); rebuilding it", self.folder, reason)
        shutil.rmtree(self.folder, ignore_errors=True)
