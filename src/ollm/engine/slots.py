"""KV slot accounting: each running sequence owns one llama.cpp sequence id."""

from __future__ import annotations


class SlotPool:
    """A fixed pool of sequence ids, handed out lowest first."""

    def __init__(self, num_slots: int) -> None:
        self._free = list(range(num_slots - 1, -1, -1))
        self.num_slots = num_slots

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_slots - len(self._free)

    def can_allocate(self) -> bool:
        return bool(self._free)

    def allocate(self) -> int:
        """Take a free slot; call :meth:`can_allocate` first."""
        if not self._free:
            raise RuntimeError("no free KV slot")
        return self._free.pop()

    def free(self, seq_id: int) -> None:
        if seq_id in self._free or not 0 <= seq_id < self.num_slots:
            raise RuntimeError(f"slot {seq_id} freed twice or unknown")
        self._free.append(seq_id)
        self._free.sort(reverse=True)
