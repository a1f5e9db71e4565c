"""Putting a prefix's KV into a newly granted slot: keep it, copy it, or load it from disk.

Runs on the engine thread (it drives the backend), when the scheduler admits a request
(:attr:`ollm.engine.scheduler.Scheduler.prepare`):

1. the slot's previous conversation, if it is being overwritten, is saved to the snapshot
   store first (when it is long enough to be worth a file);
2. a snapshot on disk sharing a longer prefix than memory offers is loaded and cut back to
   the shared part (a snapshot llama.cpp refuses is deleted and the request goes on);
3. otherwise the grant's copy (another of the owner's sequences) or the slot's own KV is
   cut back to the shared part.

When the engine stops every cached prefix is saved, so a restart finds them on disk.

Reading a state out of llama.cpp must happen on the engine thread, before the slot is
reused, but hashing and writing it (~48 MB for 2,000 SmolLM2 tokens) need not: a single
writer thread does that, so other streams do not stall while a snapshot is written. Deletes
go through the same thread, so a conversation deleted after a save was queued stays
deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ollm.backends.base import Backend
from ollm.engine.request import Request
from ollm.engine.slots import CachedPrefix, SlotGrant, common_prefix
from ollm.engine.snapshot_store import SnapshotStore

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CacheStats:
    """Counters of where prompt KV came from (read by other threads for reporting)."""

    copies: int = 0
    snapshot_saves: int = 0
    snapshot_loads: int = 0
    snapshot_tokens_loaded: int = 0
    snapshot_failures: int = 0


class PrefixCache:
    """Prepares slots for admitted requests and saves cached prefixes to disk."""

    def __init__(
        self,
        backend: Backend,
        store: SnapshotStore | None = None,
        *,
        min_snapshot_tokens: int = 64,
        min_disk_gain: int = 32,
    ) -> None:
        self.backend = backend
        self.model = backend.facts.fingerprint
        # Snapshots need a model identity (else a state could meet other weights) and a
        # model whose cache can be cut back to a prefix.
        usable = store is not None and store.enabled and bool(self.model)
        self.store = store if usable and backend.facts.prefix_reuse else None
        self.min_snapshot_tokens = min_snapshot_tokens
        self.min_disk_gain = min_disk_gain
        self.stats = CacheStats()
        self._writer: ThreadPoolExecutor | None = None
        self._pending: set[Future[object]] = set()

    def prepare(self, request: Request, grant: SlotGrant) -> int:
        """Make ``grant``'s slot hold the request's reusable prefix; returns its length."""
        assert request.seq_id == grant.seq_id
        if grant.evicted is not None:
            self.save(grant.evicted)
        restored = self._restore(request, grant.reused)
        if restored is not None:
            return restored
        if grant.copy_from is not None:
            self.backend.copy_sequence(grant.copy_from, grant.seq_id)
            self.stats.copies += 1
        self.backend.trim_sequence(grant.seq_id, keep=grant.reused)
        return grant.reused

    def save(self, prefix: CachedPrefix) -> bool:
        """Write a slot's cached prefix to disk unless it is short or already there."""
        store = self.store
        if store is None or len(prefix.tokens) < self.min_snapshot_tokens:
            return False
        if store.has(self.model, prefix.owner, prefix.tokens):
            return False
        try:
            state = self.backend.save_sequence(prefix.seq_id)
        except Exception:  # a snapshot is an optimisation: never fail a request over it
            log.exception("could not read the KV state of slot %d", prefix.seq_id)
            return False

        def write() -> None:
            saved = store.save(
                model=self.model,
                owner=prefix.owner,
                tag=prefix.tag,
                tokens=prefix.tokens,
                payload=state,
            )
            if saved is not None:
                self.stats.snapshot_saves += 1
                log.debug("saved KV snapshot of %d tokens (%s)", len(prefix.tokens), saved.name)

        self._submit(write)
        return True

    def save_all(self, cached: list[CachedPrefix]) -> int:
        """Save every cached prefix and wait for every write (the engine is stopping);
        returns how many snapshots were queued."""
        queued = sum(1 for prefix in cached if self.save(prefix))
        self.close()
        return queued

    def forget(self, tag: str) -> None:
        """Delete the snapshots of conversation ``tag`` (after any queued write)."""
        store = self.store
        if store is not None:
            self._submit(lambda: store.delete_tag(tag))

    def flush(self) -> None:
        """Wait until every queued write and delete is done."""
        for future in list(self._pending):
            future.exception()  # waits; errors were logged by the task itself

    def close(self) -> None:
        """Finish queued writes and stop the writer thread (a later save starts a new one)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)

    def _submit(self, task: Callable[[], None]) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ollm-kv-writer")

        def logged() -> None:
            try:
                task()
            except Exception:
                log.exception("KV snapshot write failed")

        future = self._writer.submit(logged)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _restore(self, request: Request, in_memory: int) -> int | None:
        """Load the best snapshot if it beats what memory offers; the tokens now in KV, or
        None when no snapshot was used (the slot is then untouched, or emptied)."""
        store = self.store
        if store is None:
            return None
        prompt = request.prompt_tokens
        entry = store.find(
            self.model, request.user, prompt, better_than=in_memory + self.min_disk_gain
        )
        if entry is None:
            return None
        loaded = store.load(entry, self.model, request.user)
        if loaded is None:
            self.stats.snapshot_failures += 1
            return None
        assert request.seq_id is not None
        if not self.backend.restore_sequence(request.seq_id, loaded.payload):
            self.stats.snapshot_failures += 1
            store.discard(entry, "llama.cpp refused the state (another context size?)")
            # The slot is empty now: whatever memory offered must be recomputed.
            self.backend.trim_sequence(request.seq_id, keep=0)
            return 0
        shared = min(common_prefix(loaded.tokens, prompt), len(prompt) - 1)
        self.backend.trim_sequence(request.seq_id, keep=shared)
        self.stats.snapshot_loads += 1
        self.stats.snapshot_tokens_loaded += shared
        log.info("restored %d prompt tokens of KV from disk", shared)
        return shared
