"""KV slot accounting: each running sequence owns one llama.cpp sequence id (a KV stream).

A freed slot keeps its KV: the tokens it holds and whose they are. A later request of the
same owner whose prompt starts with those tokens takes that slot and prefills only what
is new ("keep and extend"). The cache key is the owner, so one user's prefix never
serves, or leaks to, another. Slots without a match are taken least recently used first,
so cached prefixes only ever occupy slots no running request needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(slots=True)
class _FreeSlot:
    seq_id: int
    owner: str = ""
    tokens: list[int] = field(default_factory=list)
    last_used: int = 0


class SlotGrant(NamedTuple):
    """A slot handed to a request, and how many of its prompt tokens are already in it."""

    seq_id: int
    reused: int


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest shared start of two token lists."""
    limit = min(len(a), len(b))
    for i in range(limit):
        if a[i] != b[i]:
            return i
    return limit


class SlotPool:
    """A fixed pool of sequence ids; free ones remember their KV for prefix reuse."""

    def __init__(self, num_slots: int, *, prefix_reuse: bool = True) -> None:
        self.num_slots = num_slots
        self.prefix_reuse = prefix_reuse
        self._free: dict[int, _FreeSlot] = {i: _FreeSlot(i) for i in range(num_slots)}
        self._clock = 0

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_slots - len(self._free)

    def can_allocate(self) -> bool:
        return bool(self._free)

    def allocate(self, owner: str = "", prompt: list[int] | None = None) -> SlotGrant:
        """Take the free slot holding the longest prefix of ``prompt`` for ``owner``, else
        the least recently used one. At least one prompt token is always left to compute,
        because sampling needs the logits of the last one."""
        if not self._free:
            raise RuntimeError("no free KV slot")
        best, reused = None, 0
        if self.prefix_reuse and prompt:
            for slot in self._free.values():
                if slot.owner == owner and slot.tokens:
                    shared = min(common_prefix(slot.tokens, prompt), len(prompt) - 1)
                    if shared > reused:
                        best, reused = slot, shared
        if best is None:
            best = min(self._free.values(), key=lambda s: (bool(s.tokens), s.last_used))
        del self._free[best.seq_id]
        return SlotGrant(best.seq_id, reused)

    def free(self, seq_id: int, *, owner: str = "", tokens: list[int] | None = None) -> None:
        """Return a slot; ``tokens`` (whose KV it still holds) stay cached for ``owner``."""
        if seq_id in self._free or not 0 <= seq_id < self.num_slots:
            raise RuntimeError(f"slot {seq_id} freed twice or unknown")
        self._clock += 1
        keep = list(tokens) if tokens and self.prefix_reuse else []
        self._free[seq_id] = _FreeSlot(seq_id, owner if keep else "", keep, self._clock)

    def cached_tokens(self) -> int:
        """Tokens held in free slots' KV (the prefix cache's size)."""
        return sum(len(slot.tokens) for slot in self._free.values())
