"""sha256 digests of model files, computed once and remembered in a small JSON sidecar.

Hashing a few hundred megabytes takes a noticeable fraction of a second, so a digest is
computed on first request and cached under ``$OLLM_HOME/cache/digests.json``, keyed by
the file's resolved path and invalidated when its size or modification time changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

CHUNK = 4 * 1024 * 1024


def sha256_stream(file: BinaryIO) -> str:
    """Hex sha256 of everything left in ``file``."""
    digest = hashlib.sha256()
    while chunk := file.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``."""
    with path.open("rb") as file:
        return sha256_stream(file)


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DigestCache:
    """Digests by file, persisted in ``path``. Thread-safe; hashing runs outside the lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, int | str]] = self._read()

    def _read(self) -> dict[str, dict[str, int | str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable digest cache %s: %s", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _stamp(path: Path) -> tuple[str, int, int]:
        stat = path.stat()
        return str(path.resolve()), stat.st_size, stat.st_mtime_ns

    def cached(self, path: Path) -> str | None:
        """The digest if it is known and the file has not changed since; never hashes."""
        try:
            key, size, mtime = self._stamp(path)
        except OSError:
            return None
        with self._lock:
            entry = self._entries.get(key)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime:
            return str(entry["sha256"])
        return None

    def digest(self, path: Path) -> str:
        """The file's hex sha256, hashing it only if the cache has no current value."""
        known = self.cached(path)
        if known is not None:
            return known
        value = sha256_file(path)
        self.remember(path, value)
        return value

    def remember(self, path: Path, sha256: str) -> None:
        """Record a digest computed elsewhere (e.g. while verifying a download)."""
        key, size, mtime = self._stamp(path)
        with self._lock:
            self._entries[key] = {"size": size, "mtime_ns": mtime, "sha256": sha256}
            entries = {k: v for k, v in self._entries.items() if Path(k).exists()}
            self._entries = entries
            try:
                write_json_atomic(self.path, entries)
            except OSError as exc:  # a read-only home still serves; it just rehashes
                log.warning("could not save digest cache %s: %s", self.path, exc)
