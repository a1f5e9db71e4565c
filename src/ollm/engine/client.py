"""AsyncEngine: the asyncio face of an engine thread.

``generate()`` registers a per-request mailbox, puts the request on the engine's inbox
and returns a :class:`RequestStream`. The engine thread hands deltas back with
``call_soon_threadsafe``; a mailbox merges deltas a slow reader has not taken yet, so
memory stays bounded. Closing a stream early (client gone) aborts the request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ollm.backends.base import Backend
from ollm.engine.budget import StepBudget
from ollm.engine.kv_cache import PrefixCache
from ollm.engine.loop import EngineLoop, EngineStats
from ollm.engine.messages import AbortRequest, AddRequest, ForgetConversation
from ollm.engine.outputs import RequestOutput
from ollm.engine.request import Request
from ollm.engine.scheduler import Scheduler
from ollm.engine.snapshot_store import SnapshotStore
from ollm.errors import InvalidRequestError, QueueFullError, ShuttingDownError
from ollm.sampling import SamplingParams

log = logging.getLogger(__name__)

OutputObserver = Callable[[list[RequestOutput], float], None]
"""Sees every step's deltas on the event loop, with the ``time.monotonic()`` the engine
emitted them at, before they reach the mailboxes (metrics: TTFT, inter-token latency)."""


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Admission limits: slots that run at once and places to wait in."""

    max_running: int
    max_waiting: int
    context_per_sequence: int
    max_step_tokens: int = 512
    step_target_seconds: float = 0.2
    # One KV pool of this many cells shared by every sequence; None: a slot each.
    kv_pool_cells: int | None = None


class Mailbox:
    """Holds at most one pending delta per request, merging newer ones into it."""

    def __init__(self) -> None:
        self._pending: RequestOutput | None = None
        self._ready = asyncio.Event()

    def put(self, output: RequestOutput) -> None:
        if self._pending is None:
            self._pending = output
        else:
            self._pending.merge(output)
        self._ready.set()

    async def get(self) -> RequestOutput:
        await self._ready.wait()
        self._ready.clear()
        output, self._pending = self._pending, None
        assert output is not None  # set together with the event
        return output


class RequestStream:
    """Async iterator over one request's deltas; ``aclose()`` aborts it if unfinished."""

    def __init__(self, engine: AsyncEngine, request_id: str, mailbox: Mailbox) -> None:
        self.request_id = request_id
        self._engine = engine
        self._mailbox = mailbox
        self._done = False

    def __aiter__(self) -> RequestStream:
        return self

    async def __anext__(self) -> RequestOutput:
        if self._done:
            raise StopAsyncIteration
        try:
            output = await self._mailbox.get()
        except BaseException:
            await self.aclose()
            raise
        if output.finished:
            self._done = True
            self._engine._forget(self.request_id)
        return output

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._engine.abort(self.request_id)

    async def __aenter__(self) -> RequestStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncEngine:
    """Owns one engine thread and the mailboxes of its requests."""

    def __init__(
        self,
        backend: Backend,
        limits: EngineLimits,
        *,
        owns_backend: bool = True,
        observer: OutputObserver | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.limits = limits
        self._observer = observer
        self.backend = backend
        self._owns_backend = owns_backend
        scheduler = Scheduler(
            num_slots=limits.max_running,
            context_per_sequence=limits.context_per_sequence,
            prefix_reuse=backend.facts.prefix_reuse,
            pool_cells=limits.kv_pool_cells,
        )
        budget = StepBudget(
            target_seconds=limits.step_target_seconds, max_tokens=limits.max_step_tokens
        )
        self._loop_thread = EngineLoop(
            backend,
            scheduler,
            self._on_outputs,
            budget=budget,
            cache=PrefixCache(backend, snapshots),
        )
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._mailboxes: dict[str, Mailbox] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def stats(self) -> EngineStats:
        return self._loop_thread.stats

    @property
    def num_in_flight(self) -> int:
        """Requests added and not yet finished (running or waiting)."""
        return len(self._mailboxes)

    def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._loop_thread.start()

    def generate(
        self,
        prompt_tokens: list[int],
        params: SamplingParams,
        *,
        user: str = "",
        request_id: str | None = None,
        cache_tag: str | None = None,
    ) -> RequestStream:
        """Queue a request and return its stream. Raises 429/503-type errors at once."""
        ids = [request_id] if request_id is not None else None
        return self.generate_many(
            prompt_tokens, [params], user=user, request_ids=ids, cache_tag=cache_tag
        )[0]

    def generate_many(
        self,
        prompt_tokens: list[int],
        params: list[SamplingParams],
        *,
        user: str = "",
        request_ids: list[str] | None = None,
        cache_tag: str | None = None,
    ) -> list[RequestStream]:
        """Queue one request per entry of ``params``, all with the same prompt (the ``n``
        choices of one API request), and return their streams in order.

        The prompt is computed once: the first request runs it, and the others are queued
        when it has, copying its KV. All are admitted or refused together (429 when they
        do not all fit in the queue)."""
        if self._closed:
            raise ShuttingDownError("the server is shutting down")
        if not prompt_tokens:
            raise InvalidRequestError("the prompt is empty")
        if not params:
            raise InvalidRequestError("no sequence to generate")
        capacity = self.limits.max_running + self.limits.max_waiting
        if len(self._mailboxes) + len(params) > capacity:
            raise QueueFullError(
                f"the server is busy: {len(self._mailboxes)} requests in flight", retry_after=1
            )
        ids = request_ids or [f"req-{next(self._ids)}" for _ in params]
        if len(ids) != len(params):
            raise ValueError("one request id per sequence")
        requests = [
            Request(rid, list(prompt_tokens), p, user=user, cache_tag=cache_tag)
            for rid, p in zip(ids, params, strict=True)
        ]
        streams = []
        for request in requests:
            mailbox = Mailbox()
            self._mailboxes[request.request_id] = mailbox
            streams.append(RequestStream(self, request.request_id, mailbox))
        self._loop_thread.inbox.put(AddRequest(requests[0], tuple(requests[1:])))
        return streams

    def forget_conversation(self, tag: str) -> None:
        """Drop a conversation's cached KV (memory and disk), in order with its requests."""
        self._loop_thread.inbox.put(ForgetConversation(tag))

    def abort(self, request_id: str) -> None:
        """Stop a request; its slot is freed at the engine's next step."""
        if self._mailboxes.pop(request_id, None) is not None:
            self._loop_thread.inbox.put(AbortRequest(request_id))

    def _forget(self, request_id: str) -> None:
        self._mailboxes.pop(request_id, None)

    def _on_outputs(self, outputs: list[RequestOutput]) -> None:
        """Called on the engine thread: hop to the event loop with this step's deltas."""
        if self._event_loop is not None and not self._event_loop.is_closed():
            emitted = time.monotonic()
            self._event_loop.call_soon_threadsafe(self._deliver, outputs, emitted)

    def _deliver(self, outputs: list[RequestOutput], emitted: float = 0.0) -> None:
        if self._observer is not None:
            try:
                self._observer(outputs, emitted)
            except Exception:  # metrics must never stall a stream
                log.exception("output observer failed")
        for output in outputs:
            mailbox = self._mailboxes.get(output.request_id)
            if mailbox is not None:
                mailbox.put(output)

    async def close(self) -> None:
        """Stop admitting, abort what runs, stop the thread, free the model."""
        self._closed = True
        await asyncio.to_thread(self._loop_thread.stop)
        if self._owns_backend:
            self.backend.close()
