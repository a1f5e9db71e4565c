"""One KV pool shared by every sequence: admission by free cells, the prefix cache inside
the pool (dropped first), and preemption that loses nothing.

The fake backend keeps each sequence's tokens and fails any batch that would hold more
cells than its pool, as llama.cpp would; its replies depend only on the prompt, so a
preempted, recomputed sequence must produce exactly what an undisturbed run produces.
"""

from __future__ import annotations

from ollm.backends.fake import FakeBackend, encode_bytes
from ollm.engine.loop import EngineLoop
from ollm.engine.messages import AddRequest
from ollm.engine.outputs import RequestOutput
from ollm.engine.request import Request
from ollm.engine.scheduler import Scheduler
from ollm.sampling import SamplingParams


def reply_for(prompt: list[int]) -> str:
    """A different, long reply per prompt (from its last byte)."""
    return "".join(chr(97 + (prompt[-1] + i) % 26) for i in range(60))


class PoolHarness:
    def __init__(self, *, pool: int | None, slots: int = 4, context: int = 256) -> None:
        self.backend = FakeBackend(
            num_sequences=slots, context_per_sequence=context, kv_pool_cells=pool, reply=reply_for
        )
        self.scheduler = Scheduler(num_slots=slots, context_per_sequence=context, pool_cells=pool)
        self.deltas: dict[str, list[RequestOutput]] = {}
        self.loop = EngineLoop(self.backend, self.scheduler, self._collect)
        self.peak_waiting = 0

    def _collect(self, outputs: list[RequestOutput]) -> None:
        for output in outputs:
            self.deltas.setdefault(output.request_id, []).append(output)

    def add(self, rid: str, prompt: str, user: str = "u", **params: object) -> None:
        params = {"temperature": 0.0, "max_tokens": 40, "ignore_eos": True, **params}
        request = Request(rid, encode_bytes(prompt), SamplingParams(**params), user=user)  # type: ignore[arg-type]
        self.loop.inbox.put(AddRequest(request))

    def run(self, max_steps: int = 5000) -> None:
        for _ in range(max_steps):
            self.loop.run_once()
            self.peak_waiting = max(self.peak_waiting, self.scheduler.num_waiting)
            if not self.scheduler.has_work() and self.loop.inbox.empty():
                return
        raise AssertionError("engine did not go idle")

    @property
    def overflowed(self) -> bool:
        """Whether a batch ever failed (the fake fails any that overflows its pool)."""
        return any(d.finish_reason == "error" for ds in self.deltas.values() for d in ds)

    def tokens(self, rid: str) -> list[int]:
        return [t for d in self.deltas[rid] for t in d.token_ids]

    def final(self, rid: str) -> RequestOutput:
        return self.deltas[rid][-1]


PROMPTS = {f"r{i}": f"question number {i}: " + "context " * 6 for i in range(6)}


def _run(pool: int | None) -> PoolHarness:
    h = PoolHarness(pool=pool)
    for rid, prompt in PROMPTS.items():
        h.add(rid, prompt, user=rid)
    h.run()
    return h


def test_a_tight_pool_preempts_and_every_stream_matches_an_undisturbed_run() -> None:
    free = _run(None)  # four slots of 256 cells each: nothing ever waits for KV
    tight = _run(300)  # ~64-token prompts growing by 40: not even four fit at once
    assert tight.scheduler.preemptions > 0, "the pool was meant to run out mid-decode"
    for rid in PROMPTS:
        assert tight.final(rid).finish_reason == "length"
        assert tight.tokens(rid) == free.tokens(rid), rid  # nothing lost, nothing repeated
        assert len(tight.tokens(rid)) == 40
    assert tight.loop.stats.preemptions == tight.scheduler.preemptions
    assert not tight.overflowed


def test_admission_waits_for_free_cells_not_only_for_a_slot() -> None:
    h = PoolHarness(pool=260, slots=4)
    long_prompt = "x" * 200
    h.add("big", long_prompt, max_tokens=10)
    h.add("next", "y" * 100, max_tokens=10)
    h.loop.run_once()
    # A slot is free, but the first request holds 201 of 260 cells: the second waits.
    assert h.scheduler.num_running == 1 and h.scheduler.num_waiting == 1
    h.run()
    assert len(h.tokens("big")) == 10 and len(h.tokens("next")) == 10
    assert h.scheduler.preemptions == 0


def test_the_prefix_cache_lives_in_the_pool_and_is_dropped_first() -> None:
    h = PoolHarness(pool=300, slots=4)
    h.add("first", "a" * 120, user="alice", max_tokens=5)
    h.run()
    assert h.scheduler.slots.cached_tokens() > 0  # alice's turn stays cached...
    h.add("other", "b" * 250, user="bob", max_tokens=5)
    h.run()
    # ...until bob needs the cells: the cached prefix went, bob ran, nobody was preempted.
    assert len(h.tokens("other")) == 5
    assert h.scheduler.preemptions == 0
    assert (0, 0) in h.backend.trims or any(keep == 0 for _seq, keep in h.backend.trims)


def test_one_request_may_use_the_whole_pool() -> None:
    h = PoolHarness(pool=1024, slots=4, context=1024)
    h.add("long", "z" * 900, max_tokens=100)
    h.run()
    assert len(h.tokens("long")) == 100  # 1,000 cells: far more than a 256-cell slot
