"""KV snapshots on disk: a conversation's KV state outlives its slot and the server.

When a slot's cached prefix is about to be overwritten, or the engine stops, the engine
saves the sequence's state here (:mod:`ollm.engine.snapshot_file` format), keyed by model,
owner and the exact token prefix. A later request of the same owner whose prompt starts
with those tokens loads the state instead of recomputing it.

- **Trust**: a snapshot is used only when its checksum holds and its header names this
  model (a fingerprint of the file), this llama.cpp build and this owner, and its tokens are
  a prefix of the prompt. Anything else is deleted with a log line, never loaded.
- **Isolation**: the owner (API key, account or client) is part of the key, hashed so raw
  keys never reach the disk; one owner's snapshots are never offered to another.
- **Budget**: ``budget_bytes`` of files at most, least recently used deleted first. A new
  snapshot replaces the owner's snapshots whose tokens it extends.
- **Deletion**: snapshots carry the tag of the chat they came from; deleting the chat
  deletes them (:meth:`SnapshotStore.delete_tag`).

Engine threads (one per model) and the event loop (chat deletion) share one store: every
method takes the lock; file reads and writes happen on the calling thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ollm.engine import snapshot_file
from ollm.engine.slots import common_prefix
from ollm.engine.snapshot_file import SnapshotFormatError, SnapshotHeader

log = logging.getLogger(__name__)

SUFFIX = ".kv"


def owner_key(owner: str) -> str:
    """What a snapshot records of its owner: a hash, so no API key is written to disk."""
    return hashlib.sha256(f"ollm-kv-owner:{owner}".encode()).hexdigest()[:32]


@dataclass(slots=True)
class SnapshotEntry:
    """One file in the index: its header (tokens included) and bookkeeping."""

    path: Path
    header: SnapshotHeader
    size: int
    last_used: float


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    """A verified snapshot: the tokens its state holds and the state itself."""

    tokens: tuple[int, ...]
    payload: bytes


class SnapshotStore:
    """A directory of KV snapshots with an in-memory index, a byte budget and LRU order."""

    def __init__(self, directory: Path, *, budget_bytes: int, runtime: str) -> None:
        self.directory = directory
        self.budget_bytes = budget_bytes
        self.runtime = runtime
        self._lock = threading.Lock()
        self._entries: dict[Path, SnapshotEntry] = {}
        self.saved = 0
        self.loaded = 0
        self.discarded = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._scan()

    @property
    def enabled(self) -> bool:
        return self.budget_bytes > 0

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    # -- reading ---------------------------------------------------------------------

    def find(
        self, model: str, owner: str, prompt: Sequence[int], *, better_than: int
    ) -> SnapshotEntry | None:
        """The owner's snapshot sharing the longest prefix with ``prompt``, if that prefix
        is longer than ``better_than`` tokens (what the caller already has in memory)."""
        owner_hash = owner_key(owner)
        best, best_shared = None, better_than
        with self._lock:
            for entry in self._entries.values():
                header = entry.header
                if header.model != model or header.owner != owner_hash:
                    continue
                shared = common_prefix(header.tokens, prompt)
                if shared > best_shared:
                    best, best_shared = entry, shared
        return best

    def load(self, entry: SnapshotEntry, model: str, owner: str) -> LoadedSnapshot | None:
        """Read and verify ``entry``; None (and the file deleted) when it cannot be trusted."""
        try:
            data = entry.path.read_bytes()
            header, payload = snapshot_file.decode(data)
        except (OSError, SnapshotFormatError) as exc:
            self._discard(entry.path, f"unreadable ({exc})")
            return None
        problem = self._mismatch(header, model, owner)
        if problem is None and header.tokens != entry.header.tokens:
            problem = "its tokens changed since it was indexed"
        if problem is not None:
            self._discard(entry.path, problem)
            return None
        with self._lock:
            entry.last_used = time.time()
            self.loaded += 1
        _touch(entry.path)
        return LoadedSnapshot(header.tokens, payload)

    def discard(self, entry: SnapshotEntry, reason: str) -> None:
        """Delete a snapshot the runtime refused (e.g. the state no longer fits)."""
        self._discard(entry.path, reason)

    def has(self, model: str, owner: str, tokens: Sequence[int]) -> bool:
        """True when exactly this prefix is already saved for the owner."""
        path = self._path(model, owner_key(owner), tokens)
        with self._lock:
            return path in self._entries

    # -- writing ---------------------------------------------------------------------

    def save(
        self,
        *,
        model: str,
        owner: str,
        tag: str | None,
        tokens: Sequence[int],
        payload: bytes,
    ) -> Path | None:
        """Write a snapshot (atomically), drop the ones it supersedes, keep the budget."""
        if not self.enabled or not payload:
            return None
        header = SnapshotHeader(
            model=model,
            runtime=self.runtime,
            owner=owner_key(owner),
            tag=tag,
            tokens=tuple(tokens),
            payload_bytes=len(payload),
        )
        data = snapshot_file.encode(header, payload)
        if len(data) > self.budget_bytes:
            log.info("KV snapshot of %d tokens exceeds the disk budget; not saved", len(tokens))
            return None
        path = self._path(model, header.owner, header.tokens)
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("could not write KV snapshot %s: %s", path.name, exc)
            temporary.unlink(missing_ok=True)
            return None
        with self._lock:
            self._entries[path] = SnapshotEntry(path, header, len(data), time.time())
            self.saved += 1
            superseded = [
                entry.path
                for entry in self._entries.values()
                if entry.path != path
                and entry.header.model == model
                and entry.header.owner == header.owner
                and len(entry.header.tokens) <= len(header.tokens)
                and header.tokens[: len(entry.header.tokens)] == entry.header.tokens
            ]
        for old in superseded:
            self._remove(old)
        self._enforce_budget()
        return path

    def delete_tag(self, tag: str) -> int:
        """Delete every snapshot taken from the chat ``tag``; returns how many."""
        with self._lock:
            paths = [e.path for e in self._entries.values() if e.header.tag == tag]
        for path in paths:
            self._remove(path)
        return len(paths)

    # -- internals -------------------------------------------------------------------

    def _path(self, model: str, owner_hash: str, tokens: Sequence[int]) -> Path:
        digest = hashlib.sha256(f"{model}\0{owner_hash}\0".encode())
        digest.update(b",".join(str(t).encode() for t in tokens))
        return self.directory / f"{digest.hexdigest()[:40]}{SUFFIX}"

    def _mismatch(self, header: SnapshotHeader, model: str, owner: str) -> str | None:
        if header.runtime != self.runtime:
            return f"made by llama.cpp {header.runtime}, this is {self.runtime}"
        if header.model != model:
            return "made with another model file"
        if header.owner != owner_key(owner):
            return "belongs to another owner"
        return None

    def _scan(self) -> None:
        """Index the directory: read each file's header; drop foreign and stale files."""
        for stale in self.directory.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                header = snapshot_file.read_file_header(path)
                stat = path.stat()
            except (OSError, SnapshotFormatError) as exc:
                self._discard(path, f"unreadable ({exc})")
                continue
            if header.runtime != self.runtime:
                self._discard(path, f"made by llama.cpp {header.runtime}, this is {self.runtime}")
                continue
            self._entries[path] = SnapshotEntry(path, header, stat.st_size, stat.st_mtime)
        self._enforce_budget()

    def _enforce_budget(self) -> None:
        with self._lock:
            ordered = sorted(self._entries.values(), key=lambda entry: entry.last_used)
            total = sum(entry.size for entry in ordered)
            victims = []
            while ordered and total > self.budget_bytes:
                victim = ordered.pop(0)
                total -= victim.size
                victims.append(victim.path)
        for path in victims:
            log.info("KV snapshot %s evicted (disk budget)", path.name)
            self._remove(path)

    def _discard(self, path: Path, reason: str) -> None:
        log.warning("discarding KV snapshot %s: %s", path.name, reason)
        with self._lock:
            self.discarded += 1
        self._remove(path)

    def _remove(self, path: Path) -> None:
        with self._lock:
            self._entries.pop(path, None)
        path.unlink(missing_ok=True)


def _touch(path: Path) -> None:
    """Record use in the file's mtime, so LRU order survives a restart."""
    with contextlib.suppress(OSError):
        os.utime(path)
