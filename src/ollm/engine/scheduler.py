"""Continuous batching: which tokens of which sequences go into the next forward pass.

Plain CPU logic, no threads, no llama.cpp. Each step:

1. every running sequence that is decoding gets one token (its last sampled one);
2. the rest of the token budget goes to prompt prefill, oldest admitted first, in chunks,
   so one long prompt is spread over many steps while others keep decoding;
3. while budget and KV slots remain, waiting requests are admitted round-robin across
   users (one client's fifty requests cannot starve another's one).

**KV pool** (``pool_cells``): with one cache shared by every sequence (llama.cpp's unified
KV) a slot is only a sequence id, and what runs out is cells. Each running sequence holds
the cells of what it has computed and will compute next (``held``); free slots' cached
prefixes hold theirs. A waiting request is admitted only when its tokens fit beside them,
after cached prefixes (least recently used first) are dropped to make room: the prefix
cache lives in the pool and goes first. When decoding sequences have filled the pool, the
newest running one is preempted: its cells are freed and it goes back to the front of the
queue, keeping what it generated; readmitted, it recomputes its prompt and reply so far
and continues exactly where it stopped. Nothing is truncated and nothing crashes.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ollm.engine.request import Request, RequestStatus
from ollm.engine.slots import CachedPrefix, Sharer, SlotGrant, SlotPool


@dataclass(frozen=True, slots=True)
class ScheduledChunk:
    """``num_tokens`` tokens of ``request`` starting at absolute position ``start``.

    ``samples`` is fixed when the chunk is made: whether it reaches the sequence's last
    known token, so the step samples a new token after it.
    """

    request: Request
    start: int
    num_tokens: int
    samples: bool

    @property
    def tokens(self) -> list[int]:
        request = self.request
        return [request.token_at(i) for i in range(self.start, self.start + self.num_tokens)]


@dataclass(slots=True)
class SchedulerOutput:
    chunks: list[ScheduledChunk] = field(default_factory=list)
    admitted: list[Request] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(chunk.num_tokens for chunk in self.chunks)


class FairQueue:
    """Waiting requests, one FIFO per user; the next turn goes to the user with the fewest
    sequences running, then to the one served longest ago, then to the oldest request.

    So a client with fifty requests queued and one running yields to a client that has
    nothing running, whatever the arrival order.
    """

    def __init__(self) -> None:
        self._by_user: dict[str, deque[Request]] = {}
        self._last_served: dict[str, int] = {}
        self._turns = 0

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._by_user.values())

    def push(self, request: Request) -> None:
        self._by_user.setdefault(request.user, deque()).append(request)

    def push_front(self, request: Request) -> None:
        """Put a preempted request back at the head of its user's queue."""
        self._by_user.setdefault(request.user, deque()).appendleft(request)

    def peek(self, running: Mapping[str, int]) -> Request:
        """The request :meth:`pop` would return, left in the queue."""
        user = min(self._by_user, key=lambda u: self._priority(u, running))
        return self._by_user[user][0]

    def pop(self, running: Mapping[str, int]) -> Request:
        """Take the head request of the user whose turn it is (see the class docstring)."""
        user = min(self._by_user, key=lambda u: self._priority(u, running))
        return self._take(user)

    def _priority(self, user: str, running: Mapping[str, int]) -> tuple[int, int, float]:
        head = self._by_user[user][0]
        return running.get(user, 0), self._last_served.get(user, -1), head.arrival

    def _take(self, user: str) -> Request:
        queue = self._by_user[user]
        request = queue.popleft()
        self._turns += 1
        self._last_served[user] = self._turns
        if not queue:
            del self._by_user[user]
            del self._last_served[user]  # a user who comes back later starts afresh
        return request

    def remove(self, request_id: str) -> Request | None:
        for user, queue in self._by_user.items():
            for request in queue:
                if request.request_id == request_id:
                    queue.remove(request)
                    if not queue:
                        del self._by_user[user]
                        self._last_served.pop(user, None)
                    return request
        return None

    def in_service_order(self, running: Mapping[str, int]) -> list[Request]:
        """Waiting requests in the order :meth:`pop` would return them, assuming each
        admitted request keeps running."""
        copy = FairQueue()
        copy._by_user = {user: deque(queue) for user, queue in self._by_user.items()}
        copy._last_served = dict(self._last_served)
        copy._turns = self._turns
        counts = Counter(running)
        order = []
        while copy._by_user:
            request = copy.pop(counts)
            counts[request.user] += 1
            order.append(request)
        return order


class Scheduler:
    """Decides each step's batch and owns the lifecycle of requests inside the engine."""

    def __init__(
        self,
        *,
        num_slots: int,
        context_per_sequence: int,
        min_prefill_tokens: int = 8,
        prefix_reuse: bool = True,
        pool_cells: int | None = None,
    ) -> None:
        self.slots = SlotPool(num_slots, prefix_reuse=prefix_reuse)
        # The KV pool's size in cells (None: every slot has context_per_sequence of its own).
        self.pool_cells = pool_cells
        # Called with a slot whose cells must be freed now (a preempted sequence, or a
        # cached prefix dropped for room), and that prefix (None for a preemption): the
        # engine saves the prefix to disk if worth it, then clears the slot's KV.
        self.release: Callable[[int, CachedPrefix | None], None] | None = None
        self.preemptions = 0
        # Called for each admitted request with its slot grant, before its first chunk is
        # scheduled; returns how many prompt tokens the slot holds (the engine copies,
        # trims or restores the KV there). None: the grant's count stands.
        self.prepare: Callable[[Request, SlotGrant], int] | None = None
        self.context_per_sequence = context_per_sequence
        self.min_prefill_tokens = min_prefill_tokens
        self.waiting = FairQueue()
        self.running: list[Request] = []

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    def has_work(self) -> bool:
        return bool(self.running) or len(self.waiting) > 0

    def add(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.waiting.push(request)

    @property
    def num_decoding(self) -> int:
        """Running sequences past their prompt: each needs one token per step."""
        return sum(1 for r in self.running if not r.in_prefill)

    # -- the KV pool ----------------------------------------------------------------------

    @staticmethod
    def held(request: Request) -> int:
        """Cells a running sequence needs once its next chunk is computed: its whole
        prefill target (reserved at admission), or what it has plus the next token."""
        return max(request.num_computed, request.prefill_target) + 1

    def cells_free(self) -> int:
        """Pool cells neither running sequences nor cached prefixes hold."""
        assert self.pool_cells is not None
        running = sum(self.held(r) for r in self.running)
        return self.pool_cells - running - self.slots.cached_tokens()

    def _make_room(self, cells: int) -> bool:
        """Drop cached prefixes (least recently used first) until ``cells`` are free;
        False when even an empty cache leaves too little (and then none is dropped)."""
        if self.cells_free() + self.slots.cached_tokens() < cells:
            return False
        while self.cells_free() < cells:
            prefix = self.slots.drop_oldest_cached()
            if prefix is None:
                return False
            if self.release is not None:
                self.release(prefix.seq_id, prefix)
        return True

    def _preempt_until_decodes_fit(self) -> None:
        """Free the newest running sequences while the running ones overflow the pool."""
        while self.running and not self._make_room(0):
            victim = self.running[-1]
            if len(self.running) == 1:
                break  # one sequence alone always fits: the API caps it at the pool size
            self.running.remove(victim)
            seq_id, victim.seq_id = victim.seq_id, None
            if seq_id is not None:
                self.slots.free(seq_id, owner=victim.user, tag=victim.cache_tag, tokens=[])
                if self.release is not None:
                    self.release(seq_id, None)
            victim.num_computed = victim.num_cached = 0
            victim.prefill_until = victim.num_tokens
            victim.preemptions += 1
            self.preemptions += 1
            victim.status = RequestStatus.WAITING
            self.waiting.push_front(victim)

    def _fits_pool(self, request: Request) -> bool:
        if self.pool_cells is None:
            return True
        return self._make_room(request.num_tokens + 1)

    def schedule(self, token_budget: int) -> SchedulerOutput:
        """Pick this step's chunks: all decodes, then prefill within ``token_budget``."""
        output = SchedulerOutput()
        if self.pool_cells is not None:
            self._preempt_until_decodes_fit()
        decoding = [r for r in self.running if not r.in_prefill]
        for request in decoding:
            output.chunks.append(ScheduledChunk(request, request.num_computed, 1, samples=True))
        # Prefill always keeps a share of the step, so many decoders cannot starve it.
        budget = max(token_budget - len(decoding), self.min_prefill_tokens)
        for request in self.running:
            if budget <= 0:
                break
            if request.in_prefill:
                budget -= self._prefill_chunk(request, budget, output)
        # A slot copied from this step is not handed out again until the copy is done
        # (llama.cpp moves the data at the start of the next forward pass).
        copy_sources: set[int] = set()
        while budget > 0 and len(self.waiting) and self.slots.can_allocate(copy_sources):
            if not self._fits_pool(self.waiting.peek(self.running_per_user())):
                break  # it waits, in its place, until running sequences free cells
            request = self.waiting.pop(self.running_per_user())
            known = request.prompt_tokens + request.output_tokens  # a readmitted one's too
            request.prefill_until = request.num_tokens if request.output_tokens else 0
            grant = self._allocate(request, known, copy_sources)
            if grant.copy_from is not None:
                copy_sources.add(grant.copy_from)
            request.seq_id = grant.seq_id
            cached = grant.reused if self.prepare is None else self.prepare(request, grant)
            request.num_computed = request.num_cached = cached
            request.status = RequestStatus.RUNNING
            self.running.append(request)
            output.admitted.append(request)
            budget -= self._prefill_chunk(request, budget, output)
        return output

    def _allocate(self, request: Request, known: list[int], copy_sources: set[int]) -> SlotGrant:
        """A slot for ``request``. Another choice of a running leader copies the leader's
        own prompt KV, whatever its length, rather than reuse a cached slot: the n choices
        then attend over the very same cells (another slot's copy of that prefix may have
        been computed in other batches, so its values, and the choice, could differ)."""
        leader = request.leader
        if leader is not None and leader.seq_id is not None and leader in self.running:
            sharer = Sharer(
                leader.seq_id, request.user, leader.prompt_tokens[: leader.num_computed]
            )
            return self.slots.allocate(
                request.user,
                known,
                tag=request.cache_tag,
                sharers=[sharer],
                exclude=copy_sources,
                only_copy=True,
            )
        return self.slots.allocate(
            request.user,
            known,
            tag=request.cache_tag,
            sharers=self._sharers(request.user),
            exclude=copy_sources,
        )

    def _sharers(self, owner: str) -> list[Sharer]:
        """The owner's running sequences, with the prompt tokens already in their KV."""
        return [
            Sharer(r.seq_id, owner, r.prompt_tokens[: r.num_computed])
            for r in self.running
            if r.user == owner and r.seq_id is not None and r.num_computed
        ]

    def _prefill_chunk(self, request: Request, budget: int, output: SchedulerOutput) -> int:
        size = min(request.remaining_prompt, budget)
        reaches_end = size == request.remaining_prompt
        output.chunks.append(ScheduledChunk(request, request.num_computed, size, reaches_end))
        return size

    def record_step(self, chunk: ScheduledChunk, sampled: int | None) -> None:
        """Account for a computed chunk and the token sampled after it, if any."""
        request = chunk.request
        request.num_computed = chunk.start + chunk.num_tokens
        if sampled is not None:
            request.output_tokens.append(sampled)

    def context_full(self, request: Request) -> bool:
        """True when one more token would not fit in the sequence's context."""
        return request.num_tokens >= self.context_per_sequence

    def finish(self, request: Request, status: RequestStatus) -> int | None:
        """Retire a request; returns the KV slot it held, if any. The slot's KV stays (see
        :mod:`ollm.engine.slots`); the next admission trims it to what it reuses."""
        request.status = status
        if request in self.running:
            self.running.remove(request)
        else:
            self.waiting.remove(request.request_id)
        seq_id, request.seq_id = request.seq_id, None
        if seq_id is not None:
            # The slot keeps the KV of every computed token for the owner's next request;
            # after an error that KV is not trusted.
            computed = (
                range(request.num_computed) if status is not RequestStatus.FINISHED_ERROR else ()
            )
            tokens = [request.token_at(i) for i in computed]
            self.slots.free(seq_id, owner=request.user, tag=request.cache_tag, tokens=tokens)
        return seq_id

    def running_per_user(self) -> Counter[str]:
        return Counter(request.user for request in self.running)

    def queue_positions(self) -> dict[str, int]:
        """1-based place of each waiting request in the order it will be admitted."""
        order = self.waiting.in_service_order(self.running_per_user())
        return {request.request_id: place for place, request in enumerate(order, 1)}
