"""KV slot accounting: each running sequence owns one llama.cpp sequence id (a KV stream).

A freed slot keeps its KV: the tokens it holds, whose they are (the owner: API key,
account or client) and which conversation they came from (the tag: a chat id, or none).
The cache key is the owner, so one owner's prefix never serves, or leaks to, another.

Choosing a slot for a request (:meth:`SlotPool.allocate`):

1. **Keep and extend**: the owner's free slot sharing the longest prefix with the prompt,
   when it holds the same conversation (same tag) or little beyond the shared part — the
   next turn of a chat, a regenerated reply.
2. Otherwise the request takes an empty slot, else the least recently used one, so another
   conversation's cache survives as long as possible; its prefix still serves the request
   by **copy**: the owner's best-matching sequence, free or running (different chats with
   one system prompt), is copied into the new slot and cut back to the shared part.
   llama.cpp keeps one KV stream per sequence here, so sharing is by copy, not by
   reference; a copy costs one memcpy of a stream, worth it from ``min_copy_tokens`` on.

A slot whose conversation is overwritten is reported in the grant (``evicted``) so the
engine can save that state to disk first (:mod:`ollm.engine.snapshot_store`). Cached
prefixes only ever occupy slots no running request needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(slots=True)
class _FreeSlot:
    seq_id: int
    owner: str = ""
    tag: str | None = None
    tokens: list[int] = field(default_factory=list)
    last_used: int = 0


class CachedPrefix(NamedTuple):
    """A slot's cached KV: whose, from which conversation, and its exact tokens."""

    seq_id: int
    owner: str
    tag: str | None
    tokens: list[int]


class Sharer(NamedTuple):
    """A running sequence another request of its owner may copy a prefix from."""

    seq_id: int
    owner: str
    tokens: list[int]  # tokens whose KV it holds now (or a prefix of them)


class SlotGrant(NamedTuple):
    """A slot handed to a request: how many of its prompt tokens are already in KV (after
    the copy, if any), where to copy them from, and what the slot held before, if that
    conversation is being overwritten."""

    seq_id: int
    reused: int
    copy_from: int | None = None
    evicted: CachedPrefix | None = None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest shared start of two token lists."""
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


class SlotPool:
    """A fixed pool of sequence ids; free ones remember their KV for prefix reuse."""

    # A slot holding at most this many tokens beyond the shared part is extended in place
    # even for another tag: too little is lost to be worth another slot.
    EXTEND_SLACK = 16

    def __init__(
        self, num_slots: int, *, prefix_reuse: bool = True, min_copy_tokens: int = 32
    ) -> None:
        self.num_slots = num_slots
        self.prefix_reuse = prefix_reuse
        self.min_copy_tokens = min_copy_tokens
        self._free: dict[int, _FreeSlot] = {i: _FreeSlot(i) for i in range(num_slots)}
        self._clock = 0

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_slots - len(self._free)

    def can_allocate(self, exclude: Iterable[int] = ()) -> bool:
        return any(seq_id not in exclude for seq_id in self._free) if exclude else bool(self._free)

    def allocate(
        self,
        owner: str = "",
        prompt: list[int] | None = None,
        *,
        tag: str | None = None,
        sharers: Iterable[Sharer] = (),
        exclude: Iterable[int] = (),
        only_copy: bool = False,
    ) -> SlotGrant:
        """Choose a free slot for a request (see the module docstring). At least one prompt
        token is always left to compute, because sampling needs the logits of the last one.
        ``exclude``: free slots that may not be taken (copy sources of this step).
        ``only_copy``: take the emptiest, least recently used slot and copy the prefix from
        ``sharers`` alone, however short (another choice of the same request)."""
        excluded = set(exclude)
        free = [slot for slot in self._free.values() if slot.seq_id not in excluded]
        if not free:
            raise RuntimeError("no free KV slot")
        limit = len(prompt) - 1 if prompt else 0
        shares: dict[int, int] = {}
        if self.prefix_reuse and prompt:
            for slot in free:
                if slot.owner == owner and slot.tokens:
                    shares[slot.seq_id] = min(common_prefix(slot.tokens, prompt), limit)
        if only_copy:
            victim = min(free, key=lambda s: (bool(s.tokens), s.last_used))
            reused, copy_from = 0, None
            for sharer in sharers if self.prefix_reuse else ():  # a copy must be cut back
                shared = min(common_prefix(sharer.tokens, prompt or []), limit)
                if shared > reused:
                    reused, copy_from = shared, sharer.seq_id
            return self._take(victim, reused, copy_from, owner, tag)
        best = max(free, key=lambda s: (shares.get(s.seq_id, 0), s.last_used))
        best_share = shares.get(best.seq_id, 0)
        if best_share > 0 and (
            best.tag == tag or len(best.tokens) - best_share <= self.EXTEND_SLACK
        ):
            return self._take(best, best_share, None, owner, tag)
        victim = min(free, key=lambda s: (bool(s.tokens), s.last_used))
        reused = shares.get(victim.seq_id, 0)
        copy_from = None
        candidates = [(best_share, best.seq_id)] if best is not victim else []
        if self.prefix_reuse and prompt:
            candidates += [
                (min(common_prefix(s.tokens, prompt), limit), s.seq_id)
                for s in sharers
                if s.owner == owner
            ]
        for shared, seq_id in candidates:
            if shared >= self.min_copy_tokens and shared > reused:
                reused, copy_from = shared, seq_id
        return self._take(victim, reused, copy_from, owner, tag)

    def _take(
        self, slot: _FreeSlot, reused: int, copy_from: int | None, owner: str, tag: str | None
    ) -> SlotGrant:
        del self._free[slot.seq_id]
        evicted = None
        if slot.tokens and (slot.owner != owner or slot.tag != tag):
            evicted = CachedPrefix(slot.seq_id, slot.owner, slot.tag, slot.tokens)
        return SlotGrant(slot.seq_id, reused, copy_from, evicted)

    def free(
        self,
        seq_id: int,
        *,
        owner: str = "",
        tag: str | None = None,
        tokens: list[int] | None = None,
    ) -> None:
        """Return a slot; ``tokens`` (whose KV it still holds) stay cached for ``owner``."""
        if seq_id in self._free or not 0 <= seq_id < self.num_slots:
            raise RuntimeError(f"slot {seq_id} freed twice or unknown")
        self._clock += 1
        keep = list(tokens) if tokens and self.prefix_reuse else []
        self._free[seq_id] = _FreeSlot(
            seq_id, owner if keep else "", tag if keep else None, keep, self._clock
        )

    def cached(self) -> list[CachedPrefix]:
        """Every free slot's cached prefix (to save them when the engine stops)."""
        return [
            CachedPrefix(slot.seq_id, slot.owner, slot.tag, list(slot.tokens))
            for slot in self._free.values()
            if slot.tokens
        ]

    def forget(self, tag: str) -> int:
        """Drop the cached prefixes of conversation ``tag`` (a deleted chat)."""
        dropped = 0
        for slot in self._free.values():
            if slot.tag == tag and slot.tokens:
                slot.owner, slot.tag, slot.tokens = "", None, []
                dropped += 1
        return dropped

    def drop_oldest_cached(self) -> CachedPrefix | None:
        """Forget the least recently used cached prefix and return it (the caller frees
        its KV), or None when no free slot holds one."""
        holding = [slot for slot in self._free.values() if slot.tokens]
        if not holding:
            return None
        slot = min(holding, key=lambda s: s.last_used)
        prefix = CachedPrefix(slot.seq_id, slot.owner, slot.tag, list(slot.tokens))
        slot.owner, slot.tag, slot.tokens = "", None, []
        return prefix

    def cached_tokens(self) -> int:
        """Tokens held in free slots' KV (the prefix cache's size)."""
        return sum(len(slot.tokens) for slot in self._free.values())
