"""The registry: which models exist, what their files say about them, copy and delete.

Three sources, in increasing precedence: GGUF files dropped into ``$OLLM_HOME/models``
(named ``<stem>:latest``), names in the manifest (pulled, copied or created models), and the
bundled models, whose names can be neither deleted nor overwritten. The directory and the
manifest are re-read whenever they change, so a file copied in is served without a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ollm.errors import ModelNotFoundError, ModelProtectedError
from ollm.model_names import canonical_name, lookup_key, name_from_file
from ollm.services.models import bundled
from ollm.services.models.digests import DigestCache, sha256_file
from ollm.services.models.gguf_info import GGUFFormatError, GGUFInfo, read_gguf_info
from ollm.services.models.preset import ModelPreset
from ollm.services.models.store import ManifestRecord, ModelStore, is_sha256_hex
from ollm.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model that can be loaded: its public id and where its weights are.

    ``origin`` is ``"bundled"``, ``"local"`` (a file in the models directory), ``"pulled"``,
    ``"copy"`` or ``"created"`` (by ``/api/create``: it has a ``preset``). ``digest`` is the
    file's sha256 (64 hex digits), computed on first use and cached on disk.
    """

    model_id: str
    path: Path
    description: str = ""
    bundled: bool = False
    origin: str = "local"
    modified: float | None = None  # when the name was written; default: the file's mtime
    known_digest: str | None = field(default=None, compare=False)
    digests: DigestCache | None = field(default=None, compare=False, repr=False)
    # What /api/create added: system prompt, template, parameters, history, license.
    preset: ModelPreset | None = field(default=None, compare=False)

    @property
    def created(self) -> int:
        return int(self.path.stat().st_mtime) if self.path.exists() else 0

    @property
    def size_bytes(self) -> int:
        """Size of the weights file in bytes."""
        return self.path.stat().st_size if self.path.exists() else 0

    @property
    def modified_at(self) -> datetime:
        """When this name was last written (pull, copy) or the file last changed (UTC)."""
        stamp = self.modified if self.modified is not None else float(self.created)
        return datetime.fromtimestamp(stamp, UTC)

    @property
    def digest(self) -> str:
        """Hex sha256 of the weights file (hashed once, then cached in ``$OLLM_HOME``)."""
        if self.known_digest is not None:
            return self.known_digest
        if self.digests is not None:
            return self.digests.digest(self.path)
        return sha256_file(self.path)

    @property
    def cached_digest(self) -> str | None:
        """The digest if already known, without hashing."""
        if self.known_digest is not None:
            return self.known_digest
        return self.digests.cached(self.path) if self.digests is not None else None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ``ollm show`` reports: facts read from the GGUF header (None when unknown)."""

    id: str
    format: str
    family: str | None
    families: list[str]
    architecture: str | None
    parameter_count: int | None
    parameter_size: str | None
    quantization: str | None
    context_length: int | None
    size_bytes: int
    digest: str
    chat_template: str | None
    license: str | None
    modified_at: datetime
    metadata: dict[str, Any]
    description: str = ""
    bundled: bool = False
    origin: str = "local"
    preset: ModelPreset | None = None  # a created model's system, parameters, ...


def format_parameter_count(count: int) -> str:
    """``134515008`` -> ``"135M"``, ``8030261248`` -> ``"8.0B"`` (as model cards write it)."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{round(count / 1e6)}M"
    if count >= 1_000:
        return f"{round(count / 1e3)}K"
    return str(count)


def _license(metadata: dict[str, Any]) -> str | None:
    value = metadata.get("general.license")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return value if isinstance(value, str) and value else None


class Registry:
    """Model entries from bundled packages, the models directory and the manifest."""

    def __init__(
        self,
        settings: Settings,
        *,
        entries: Sequence[ModelEntry] | None = None,
        bundled_models: Sequence[bundled.BundledModel] = bundled.BUNDLED_MODELS,
    ) -> None:
        self.models_dir = settings.models_dir
        self.store = ModelStore(self.models_dir)
        self.digests = DigestCache(settings.home / "cache" / "digests.json")
        static = list(entries) if entries is not None else self._locate_bundled(bundled_models)
        self._static = {e.model_id: dataclasses.replace(e, digests=self.digests) for e in static}
        self._snapshot: tuple[object, dict[str, ModelEntry]] | None = None
        self._gguf: dict[tuple[str, int, int], GGUFInfo | None] = {}
        self._lock = threading.Lock()

    def _locate_bundled(self, models: Sequence[bundled.BundledModel]) -> list[ModelEntry]:
        found = []
        for model in models:
            path = bundled.locate(model, self.models_dir)
            if path is not None:
                found.append(
                    ModelEntry(model.model_id, path, model.description, True, origin="bundled")
                )
        return found

    # -- listing -------------------------------------------------------------------------

    def _stamp(self) -> tuple[int, tuple[int, int, int]]:
        try:
            directory = self.models_dir.stat().st_mtime_ns
        except OSError:
            directory = 0
        return directory, self.store.version()

    def entries(self) -> dict[str, ModelEntry]:
        """Every model by id; rescanned only when the directory or manifest changed."""
        stamp = self._stamp()
        snapshot = self._snapshot
        if snapshot is not None and snapshot[0] == stamp:
            return dict(snapshot[1])
        result = dict(self._static)
        result.update(self._loose_files(result))
        result.update(self._manifest_entries())
        self._snapshot = (stamp, result)
        return dict(result)

    def _loose_files(self, static: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        # A built-in model's own file is not listed twice; a link to it is a new name.
        taken = {entry.path.absolute() for entry in static.values()}
        found: dict[str, ModelEntry] = {}
        if not self.models_dir.is_dir():
            return found
        for path in sorted(self.models_dir.glob("*.gguf")):
            model_id = name_from_file(path)
            if not path.is_file() or path.absolute() in taken or model_id is None:
                continue
            if model_id not in static and model_id not in found:
                entry = ModelEntry(model_id, path, "local GGUF file", digests=self.digests)
                found[model_id] = entry
        return found

    def _manifest_entries(self) -> dict[str, ModelEntry]:
        static_paths = {entry.path.resolve() for entry in self._static.values()}
        found: dict[str, ModelEntry] = {}
        for name, record in self.store.records().items():
            model_id = lookup_key(name)
            if model_id is None or model_id in self._static:
                log.warning("ignoring manifest name %r (invalid or reserved)", name)
                continue
            path = self._record_path(record, static_paths)
            if path is None:
                continue
            preset = ModelPreset.from_json(record.preset)
            origin = "pulled" if record.source.startswith("hf.co/") else "copy"
            found[model_id] = ModelEntry(
                model_id,
                path,
                record.source,
                origin=origin,
                modified=record.modified_at or None,
                known_digest=record.digest if is_sha256_hex(record.digest) else None,
                digests=self.digests,
                preset=preset,
            )
            if preset is not None:
                found[model_id] = dataclasses.replace(found[model_id], origin="created")
        return found

    def _record_path(self, record: ManifestRecord, static_paths: set[Path]) -> Path | None:
        path = self.store.record_path(record)
        # Absolute paths are only written for copies of bundled models; accept nothing else.
        if path is None or (Path(record.file).is_absolute() and path.resolve() not in static_paths):
            log.warning("ignoring manifest file %r outside the models directory", record.file)
            return None
        return path if path.is_file() else None

    def resolve(self, name: str) -> ModelEntry:
        """The entry for ``name`` (case-insensitive; a bare name means ``:latest`` or the
        only tag of that name). :class:`ModelNotFoundError` (404) otherwise."""
        entries = self.entries()
        key = lookup_key(name)
        if key is not None and key in entries:
            return entries[key]
        if key is not None and ":" not in name:
            repository = key.rpartition(":")[0]
            matches = [e for mid, e in entries.items() if mid.rpartition(":")[0] == repository]
            if len(matches) == 1:
                return matches[0]
        raise ModelNotFoundError(f"model '{name}' not found", param="model")

    def is_protected(self, model_id: str) -> bool:
        """Bundled (and other built-in) names cannot be deleted or overwritten."""
        return model_id in self._static

    # -- metadata -------------------------------------------------------------------------

    def gguf_info(self, path: Path) -> GGUFInfo | None:
        """The parsed GGUF header (cached per file version), or None if not a GGUF file."""
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._gguf:
                return self._gguf[key]
        try:
            info: GGUFInfo | None = read_gguf_info(path)
        except (GGUFFormatError, OSError, ValueError) as exc:
            log.debug("%s is not a readable GGUF file: %s", path, exc)
            info = None
        with self._lock:
            self._gguf[key] = info
        return info

    def info(self, entry: ModelEntry) -> ModelInfo:
        """Facts about ``entry`` read from its file (hashes it once for the digest)."""
        gguf = self.gguf_info(entry.path)
        metadata = dict(gguf.metadata) if gguf is not None else {}
        architecture = gguf.architecture if gguf is not None else None
        template = metadata.pop("tokenizer.chat_template", None)
        preset = entry.preset
        if preset is not None and preset.template is not None:
            template = preset.template  # a created model's own template replaces the file's
        count = gguf.parameter_count if gguf is not None and gguf.tensors else None
        return ModelInfo(
            id=entry.model_id,
            format="gguf" if gguf is not None else "unknown",
            family=architecture,
            families=[architecture] if architecture else [],
            architecture=architecture,
            parameter_count=count,
            parameter_size=format_parameter_count(count) if count else None,
            quantization=gguf.quantization if gguf is not None else None,
            context_length=gguf.context_length if gguf is not None else None,
            size_bytes=entry.size_bytes,
            digest=entry.cached_digest or (entry.digest if entry.path.is_file() else ""),
            chat_template=template if isinstance(template, str) else None,
            license=(preset.license if preset and preset.license else None) or _license(metadata),
            modified_at=entry.modified_at,
            metadata=metadata,
            description=entry.description,
            bundled=entry.bundled,
            origin=entry.origin,
            preset=preset,
        )

    # -- changes --------------------------------------------------------------------------

    def add(
        self,
        name: str,
        path: Path,
        *,
        digest: str | None,
        source: str,
        preset: ModelPreset | None = None,
    ) -> ModelEntry:
        """Record ``name`` for the file at ``path`` (a pull's last step, or a create's, with
        the ``preset`` it layers over the file)."""
        model_id = canonical_name(name)
        self.refuse_protected(model_id, "overwritten")
        stored = preset.to_json() if preset is not None else None
        record = ManifestRecord(self.store.stored_path(path), digest, source, preset=stored)
        self.store.put(model_id, record)
        self._snapshot = None
        return self.resolve(model_id)

    def copy(self, source: ModelEntry, destination: str) -> ModelEntry:
        """Give ``source``'s file a second name (no bytes copied); replaces ``destination``.
        A created model's preset goes with it, as Ollama copies every layer."""
        model_id = canonical_name(destination)
        if model_id == source.model_id:
            return source
        self.refuse_protected(model_id, "overwritten")
        record = ManifestRecord(
            self.store.stored_path(source.path),
            source.cached_digest,
            f"copy of {source.model_id}",
            preset=source.preset.to_json() if source.preset is not None else None,
        )
        self.store.put(model_id, record)
        self._snapshot = None
        return self.resolve(model_id)

    def delete(self, entry: ModelEntry) -> None:
        """Forget ``entry``; its file goes too unless another name still uses it."""
        self.refuse_protected(entry.model_id, "deleted")
        record = self.store.remove(entry.model_id)
        try:
            if record is not None:
                self._drop_file_if_unused(entry.path)
            else:
                self._delete_loose_file(entry)
        finally:
            self._snapshot = None

    def refuse_protected(self, model_id: str, action: str) -> None:
        """Raise :class:`ModelProtectedError` (400) if ``model_id`` is built in."""
        if self.is_protected(model_id):
            raise ModelProtectedError(
                f"model '{model_id}' ships with ollm and cannot be {action}", param="model"
            )

    def _drop_file_if_unused(self, path: Path) -> None:
        blobs = self.store.blobs_dir.resolve()
        resolved = path.resolve()
        if blobs not in resolved.parents or self.store.names_for(path):
            return  # a dropped-in file, a bundled file, or still named by another entry
        path.unlink(missing_ok=True)

    def _delete_loose_file(self, entry: ModelEntry) -> None:
        others = self.store.names_for(entry.path)
        if not others:
            entry.path.unlink(missing_ok=True)
            return
        # Other names still use this file: move it into the blob store under its digest.
        blob = self.store.blob_path(entry.digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        old = self.store.stored_path(entry.path)
        os.replace(entry.path, blob)
        self.store.repoint(old, self.store.stored_path(blob))
