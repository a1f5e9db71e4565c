"""The model store under ``$OLLM_HOME/models``: a manifest of names, and blobs by digest.

Layout::

    models/manifest.json           {"version": 1, "models": {"name:tag": {file, digest, ...}}}
                                   (a created model's record adds its ``preset``)
    models/blobs/sha256-<hex>      pulled GGUF files, named by their sha256
    models/blobs/sha256-<hex>.partial   a download in progress (resumed by the next pull)
    models/blobs/sha256-<hex>.upload-*  a POST /api/blobs upload in progress
    models/*.gguf                  files a person dropped in (listed as <stem>:latest)

A copy is one more manifest name for the same file, so ``ollm cp`` costs no disk. File
names come from digests, never from model names; a manifest path that resolves outside
the models directory is ignored unless it is a bundled model's file.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ollm.services.models.digests import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """One name in the manifest and the file it stands for."""

    file: str  # relative to the models directory, or absolute for a bundled model's file
    digest: str | None = None  # hex sha256 when known
    source: str = ""  # where it came from: "hf.co/org/repo/file.gguf@commit", "copy of x:y"
    modified_at: float = 0.0  # unix time the name was written
    # What /api/create layered over the file (system prompt, template, parameters, ...):
    # ModelPreset.to_json(); None for pulls and plain copies. Older manifests lack it.
    preset: dict[str, Any] | None = None


def is_sha256_hex(value: object) -> bool:
    """True for 64 lower-case hex digits (a digest safe to use in a file name)."""
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


class ModelStore:
    """Reads and writes the manifest; knows where blobs and partial downloads live."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self.manifest_path = models_dir / "manifest.json"
        self.blobs_dir = models_dir / "blobs"
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], dict[str, ManifestRecord]] | None = None

    def blob_path(self, sha256: str) -> Path:
        """Where the file with this digest lives once complete."""
        if not is_sha256_hex(sha256):
            raise ValueError(f"not a sha256 digest: {sha256!r}")
        return self.blobs_dir / f"sha256-{sha256}"

    def partial_path(self, sha256: str) -> Path:
        """Where its download accumulates until verified."""
        return self.blob_path(sha256).with_suffix(".partial")

    def stored_path(self, path: Path) -> str:
        """How the manifest records ``path``: relative when inside the models directory."""
        # Resolve the directory but not the file itself: a symlink dropped into the models
        # directory is recorded as that link, wherever it points.
        located, root = path.parent.resolve() / path.name, self.models_dir.resolve()
        if root in located.parents:
            return located.relative_to(root).as_posix()
        return str(path.resolve())

    def record_path(self, record: ManifestRecord) -> Path | None:
        """The file a record names: relative ones must stay inside the models directory
        (no ``..``); absolute ones are returned for the caller to vet."""
        raw = Path(record.file)
        if raw.is_absolute():
            return raw
        if not raw.parts or ".." in raw.parts:
            return None
        return self.models_dir / raw

    def version(self) -> tuple[int, int, int]:
        """Identifies the manifest's current content: each write replaces the file, so its
        inode changes even when two writes land within one clock tick of the mtime."""
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def records(self) -> dict[str, ManifestRecord]:
        """Every manifest name (re-read only when the file changed)."""
        version = self.version()
        if version == (0, 0, 0):
            return {}
        cache = self._cache
        if cache is not None and cache[0] == version:
            return dict(cache[1])
        records = self._read()
        self._cache = (version, records)
        return dict(records)

    def _read(self) -> dict[str, ManifestRecord]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("cannot read %s: %s", self.manifest_path, exc)
            return {}
        models = data.get("models") if isinstance(data, dict) else None
        records: dict[str, ManifestRecord] = {}
        for name, raw in (models or {}).items():
            try:
                record = ManifestRecord(**raw)
            except TypeError:
                log.warning("ignoring malformed manifest entry %r", name)
                continue
            if isinstance(name, str) and isinstance(record.file, str):
                records[name] = record
        return records

    def _write(self, records: dict[str, ManifestRecord]) -> None:
        data = {
            "version": MANIFEST_VERSION,
            "models": {name: asdict(record) for name, record in sorted(records.items())},
        }
        write_json_atomic(self.manifest_path, data)
        self._cache = None

    def put(self, name: str, record: ManifestRecord) -> None:
        """Add or replace ``name`` (stamping ``modified_at`` if unset)."""
        if not record.modified_at:
            record = replace(record, modified_at=time.time())
        with self._lock:
            records = self._read()
            records[name] = record
            self._write(records)

    def remove(self, name: str) -> ManifestRecord | None:
        """Drop ``name``; the record it had, if any."""
        with self._lock:
            records = self._read()
            record = records.pop(name, None)
            if record is not None:
                self._write(records)
            return record

    def repoint(self, old_file: str, new_file: str) -> None:
        """Make every name that referred to ``old_file`` refer to ``new_file``."""
        with self._lock:
            records = self._read()
            for name, record in records.items():
                if record.file == old_file:
                    records[name] = replace(record, file=new_file)
            self._write(records)

    def names_for(self, path: Path) -> list[str]:
        """Manifest names whose file is ``path``."""
        target = path.resolve()
        return [
            name
            for name, record in self.records().items()
            if (found := self.record_path(record)) is not None and found.resolve() == target
        ]
