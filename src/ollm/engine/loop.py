"""The engine thread: drain the inbox, schedule, one forward pass, postprocess. Repeat.

One thread per loaded model owns the scheduler, the backend and every request's
sampler and detokenizer; nothing else touches them. The outside world talks to it only
through the thread-safe inbox, and hears back through the ``emit`` callback, called once
per step with every delta that step produced.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ollm.backends.base import Backend, BatchItem, Sampler
from ollm.engine.budget import StepBudget
from ollm.engine.detokenizer import Detokenizer
from ollm.engine.kv_cache import PrefixCache
from ollm.engine.messages import (
    AbortRequest,
    AddRequest,
    EngineMessage,
    ForgetConversation,
    Shutdown,
)
from ollm.engine.outputs import RequestOutput, TokenLogprob
from ollm.engine.request import Request, RequestStatus
from ollm.engine.scheduler import ScheduledChunk, Scheduler, SchedulerOutput
from ollm.engine.slots import CachedPrefix, SlotGrant

log = logging.getLogger(__name__)

Emit = Callable[[list[RequestOutput]], None]


@dataclass(slots=True)
class _Live:
    """Per-request state only the engine thread touches."""

    request: Request
    detokenizer: Detokenizer
    sampler: Sampler | None = None
    queue_position: int | None = None


class Distribution:
    """Observations counted per bucket (``counts[i]``: values <= ``bounds[i]``; the last
    count is above every bound), written by the engine thread alone, read when reporting.

    No lock: a reader copies ``counts`` (one list copy under the GIL), so a report may miss
    the latest observation but its buckets always add up to its total count.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0  # sum of the observed values

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


BATCH_SEQUENCE_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
QUEUE_WAIT_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(slots=True)
class EngineStats:
    """Counters read by other threads (ints, so reads are atomic enough for reporting).

    ``kv_cells_used``: KV cells holding running sequences' tokens. The distributions
    record each step's sequences and tokens, and each request's seconds from arrival to
    admission; metrics read them at scrape time.
    """

    steps: int = 0
    running: int = 0
    waiting: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    last_batch_tokens: int = 0
    admissions: int = 0
    prefix_hits: int = 0
    cached_prompt_tokens: int = 0
    prefix_copies: int = 0
    snapshot_saves: int = 0
    snapshot_loads: int = 0
    snapshot_tokens_loaded: int = 0
    peak_batch_sequences: int = 0
    kv_cells_used: int = 0
    preemptions: int = 0
    batch_sequences: Distribution = field(
        default_factory=lambda: Distribution(BATCH_SEQUENCE_BOUNDS)
    )
    batch_tokens: Distribution = field(default_factory=lambda: Distribution(BATCH_TOKEN_BOUNDS))
    queue_wait: Distribution = field(default_factory=lambda: Distribution(QUEUE_WAIT_BOUNDS))


class EngineLoop:
    """Runs continuous batching over one backend on a dedicated thread."""

    def __init__(
        self,
        backend: Backend,
        scheduler: Scheduler,
        emit: Emit,
        *,
        budget: StepBudget | None = None,
        cache: PrefixCache | None = None,
    ) -> None:
        self.backend = backend
        self.scheduler = scheduler
        self.cache = cache or PrefixCache(backend)
        scheduler.prepare = self._prepare_slot
        scheduler.release = self._release_slot
        self._unprepared: dict[str, Exception] = {}
        self.budget = budget or StepBudget(target_seconds=0.2, max_tokens=512)
        self.inbox: queue.SimpleQueue[EngineMessage] = queue.SimpleQueue()
        self.stats = EngineStats()
        self._emit = emit
        self._live: dict[str, _Live] = {}
        # Requests waiting for a leader's prompt to be computed (see AddRequest.followers).
        self._followers: dict[str, tuple[Request, ...]] = {}
        self._thread: threading.Thread | None = None

    def start(self, name: str = "ollm-engine") -> None:
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the thread to finish (aborting what is left) and wait for it."""
        self.inbox.put(Shutdown())
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The loop itself; returns after a Shutdown message, aborting what is left."""
        while self.run_once(block=True):
            pass
        self._abort_all()
        self._save_cache()

    def run_once(self, *, block: bool = False) -> bool:
        """Apply the inbox, then one schedule / forward pass / postprocess. False on Shutdown.

        With ``block`` it sleeps on the inbox while there is nothing to do.
        """
        if not self._drain_inbox(block=block and not self.scheduler.has_work()):
            return False
        decoding = self.scheduler.num_decoding
        step = self.scheduler.schedule(self.budget.tokens(decoding=decoding))
        if step.chunks:
            started = time.perf_counter()
            self._step(step)
            elapsed = time.perf_counter() - started
            self.budget.observe(num_tokens=step.num_tokens, seconds=elapsed, decoding=decoding)
        self._update_stats()
        return True

    # -- inbox -----------------------------------------------------------------------

    def _drain_inbox(self, *, block: bool) -> bool:
        """Apply queued messages; False once Shutdown arrives."""
        try:
            message = self.inbox.get(block=block)
        except queue.Empty:
            return True
        while True:
            if isinstance(message, Shutdown):
                return False
            if isinstance(message, AddRequest):
                self._add(message.request, message.followers)
            elif isinstance(message, AbortRequest):
                out: list[RequestOutput] = []
                self._finish(message.request_id, RequestStatus.FINISHED_ABORTED, out)
                self._emit_all(out)
            elif isinstance(message, ForgetConversation):
                self._forget(message.tag)
            try:
                message = self.inbox.get_nowait()
            except queue.Empty:
                return True

    def _add(self, request: Request, followers: tuple[Request, ...] = ()) -> None:
        self._live[request.request_id] = _Live(request, Detokenizer(request.params.stop))
        self.scheduler.add(request)
        for follower in followers:  # known (abortable) now, queued once the prompt is in KV
            self._live[follower.request_id] = _Live(follower, Detokenizer(follower.params.stop))
        if followers:
            self._followers[request.request_id] = followers

    def _release_followers(self, leader: Request) -> None:
        """Queue the requests that waited for ``leader``'s prompt (its first token was
        sampled, or it ended): the prompt's KV is in its slot now, so each follower's slot
        copies it (:mod:`ollm.engine.slots`) instead of computing it again."""
        for follower in self._followers.pop(leader.request_id, ()):
            if follower.request_id in self._live:  # not aborted meanwhile
                follower.leader = leader
                follower.arrival = time.monotonic()
                self.scheduler.add(follower)

    # -- one step --------------------------------------------------------------------

    def _step(self, step: SchedulerOutput) -> None:
        outputs: list[RequestOutput] = []
        admitted_at = time.monotonic()
        for request in step.admitted:
            self.stats.queue_wait.observe(admitted_at - request.arrival)
            live = self._live[request.request_id]
            live.queue_position = None
            self._count_admission(request)
            failed = self._unprepared.pop(request.request_id, None)
            if failed is not None:  # e.g. a grammar llama.cpp rejects: this request only
                log.warning("request %s: could not start: %s", request.request_id, failed)
                self._finish(request.request_id, RequestStatus.FINISHED_ERROR, outputs, failed)
        chunks = [c for c in step.chunks if c.request.request_id in self._live]
        if not chunks:
            self._emit_all(outputs)
            return
        step = SchedulerOutput(chunks, step.admitted)
        items = [self._batch_item(chunk) for chunk in step.chunks]
        try:
            sampled = self.backend.decode(items)
        except Exception as exc:  # the engine outlives a failed step; its requests do not
            log.exception("forward pass failed")
            for chunk in step.chunks:
                self._finish(chunk.request.request_id, RequestStatus.FINISHED_ERROR, outputs, exc)
            self._emit_all(outputs)
            return
        self.stats.steps += 1
        self.stats.last_batch_tokens = step.num_tokens
        self.stats.peak_batch_sequences = max(self.stats.peak_batch_sequences, len(step.chunks))
        self.stats.batch_sequences.observe(len(step.chunks))
        self.stats.batch_tokens.observe(step.num_tokens)
        for chunk, token in zip(step.chunks, sampled, strict=True):
            if chunk.start < chunk.request.num_prompt_tokens:
                self.stats.prompt_tokens += chunk.num_tokens
            self.scheduler.record_step(chunk, token)
            if token is not None:
                outputs.append(self._on_token(chunk.request, token))
        outputs.extend(self._queue_updates())
        self._emit_all(outputs)

    def _batch_item(self, chunk: ScheduledChunk) -> BatchItem:
        request = chunk.request
        return BatchItem(
            seq_id=request.seq_id,
            tokens=chunk.tokens,
            start_pos=chunk.start,
            sample=chunk.samples,
            sampler=self._live[request.request_id].sampler,
            num_generated=len(request.output_tokens),
        )

    def _on_token(self, request: Request, token: int) -> RequestOutput:
        live = self._live[request.request_id]
        if len(request.output_tokens) == 1:
            request.first_token_time = time.monotonic()
            self._release_followers(request)
        eos = self.backend.is_end_of_generation(token) and not request.params.ignore_eos
        if eos:
            request.output_tokens.pop()  # EOS ends the reply; it is not part of it
            text = ""
        else:
            self.stats.generated_tokens += 1
            text = live.detokenizer.push(self.backend.token_bytes(token))
        output = self._output(request, text, token=None if eos else token)
        if not eos and request.params.logprobs is not None:
            output.logprobs = self._logprobs(live.sampler)
        status = self._finish_status(request, eos=eos, stopped=live.detokenizer.stopped)
        if status is None:
            return output
        tail = [output]
        self._finish(request.request_id, status, tail)
        for later in tail[1:]:
            output.merge(later)
        return output

    def _logprobs(self, sampler: Sampler | None) -> tuple[TokenLogprob, ...]:
        """The latest sampled token's log-probabilities, with bytes for every token."""
        scored = sampler.last_logprobs if sampler is not None else None
        if scored is None:
            return ()
        piece = self.backend.token_bytes
        top = tuple((piece(token), logprob) for token, logprob in scored.top)
        return (TokenLogprob(piece(scored.token), scored.logprob, top),)

    def _finish_status(self, request: Request, *, eos: bool, stopped: bool) -> RequestStatus | None:
        """Why the request ends after its latest token, or None if it goes on."""
        if eos or stopped:
            return RequestStatus.FINISHED_STOP
        max_tokens = request.params.max_tokens
        if max_tokens is not None and len(request.output_tokens) >= max_tokens:
            return RequestStatus.FINISHED_LENGTH
        if self.scheduler.context_full(request):
            return RequestStatus.FINISHED_LENGTH
        return None

    # -- finishing -------------------------------------------------------------------

    def _finish(
        self,
        request_id: str,
        status: RequestStatus,
        out: list[RequestOutput],
        error: BaseException | None = None,
    ) -> None:
        live = self._live.pop(request_id, None)
        if live is None:
            return  # already finished (an abort racing the last token)
        request = live.request
        self._release_followers(request)  # they go on alone (or are aborted by their caller)
        self.scheduler.finish(request, status)  # a follower still held back: in no queue
        if live.sampler is not None:
            live.sampler.close()
        final = self._output(request, live.detokenizer.flush())
        final.finish_reason = status.value
        final.error = str(error) if error else None
        final.stop_sequence = live.detokenizer.matched_stop
        out.append(final)

    def _abort_all(self) -> None:
        outputs: list[RequestOutput] = []
        for request_id in list(self._live):
            self._finish(request_id, RequestStatus.FINISHED_ABORTED, outputs)
        self._emit_all(outputs)
        self._update_stats()

    # -- helpers ---------------------------------------------------------------------

    def _prepare_slot(self, request: Request, grant: SlotGrant) -> int:
        """The scheduler's admission hook: make the request's sampler, then put the
        reusable prefix into the slot (see :mod:`ollm.engine.kv_cache`). A failure fails
        this request alone, in ``_step``.

        The sampler comes first because a copy into the slot only happens at the next
        forward pass: a request failing after its copy was queued could leave that copy
        pending, to land later on whatever the slot holds by then."""
        try:
            self._live[request.request_id].sampler = self.backend.new_sampler(request.params)
            return self.cache.prepare(request, grant)
        except Exception as exc:
            log.exception(
                "request %s: could not prepare KV slot %d", request.request_id, grant.seq_id
            )
            self._unprepared[request.request_id] = exc
            return 0

    def _release_slot(self, seq_id: int, prefix: CachedPrefix | None) -> None:
        """The scheduler's pool hook: free a slot's cells now. A cached prefix dropped for
        room is saved to disk first when worth it, so the conversation can still resume
        without a prefill; a preempted sequence's cells are simply cleared."""
        try:
            if prefix is not None:
                self.cache.save(prefix)
            self.backend.trim_sequence(seq_id, keep=0)
        except Exception:
            log.exception("could not free KV slot %d", seq_id)

    def _count_admission(self, request: Request) -> None:
        self.stats.admissions += 1
        if request.num_cached:
            self.stats.prefix_hits += 1
            self.stats.cached_prompt_tokens += request.num_cached

    def _save_cache(self) -> None:
        """On the way out: every cached prefix to disk, so a restart can pick it up."""
        try:
            saved = self.cache.save_all(self.scheduler.slots.cached())
        except Exception:
            log.exception("could not save the KV cache")
            return
        if saved:
            log.info("saved %d KV snapshots", saved)
        self._update_stats()

    def _forget(self, tag: str) -> None:
        """A conversation was deleted: drop its cached prefixes, in memory and on disk."""
        self.scheduler.slots.forget(tag)
        try:
            self.cache.forget(tag)
        except Exception:
            log.exception("could not delete the KV snapshots of a conversation")

    def _output(self, request: Request, text: str, token: int | None = None) -> RequestOutput:
        latency = None
        if request.first_token_time is not None and len(request.output_tokens) == 1:
            latency = request.first_token_time - request.arrival
        return RequestOutput(
            request_id=request.request_id,
            text=text,
            token_ids=(token,) if token is not None else (),
            num_prompt_tokens=request.num_prompt_tokens,
            num_cached_tokens=request.num_cached,
            num_output_tokens=len(request.output_tokens),
            first_token_latency=latency,
        )

    def _queue_updates(self) -> list[RequestOutput]:
        """A delta for each waiting request whose place in the queue changed."""
        updates = []
        for request_id, position in self.scheduler.queue_positions().items():
            live = self._live[request_id]
            if live.queue_position != position:
                live.queue_position = position
                update = self._output(live.request, "")
                update.queue_position = position
                updates.append(update)
        return updates

    def _emit_all(self, outputs: list[RequestOutput]) -> None:
        if outputs:
            self._emit(outputs)

    def _update_stats(self) -> None:
        self.stats.running = self.scheduler.num_running
        self.stats.waiting = self.scheduler.num_waiting
        self.stats.kv_cells_used = sum(r.num_computed for r in self.scheduler.running)
        self.stats.preemptions = self.scheduler.preemptions
        cache = self.cache.stats
        self.stats.prefix_copies = cache.copies
        self.stats.snapshot_saves = cache.snapshot_saves
        self.stats.snapshot_loads = cache.snapshot_loads
        self.stats.snapshot_tokens_loaded = cache.snapshot_tokens_loaded
