"""A chat reply being generated: engine deltas in, saved text and client events out.

Each :class:`RunningReply` owns a task that drains the engine stream into the database:
the text so far every ``checkpoint_seconds`` (so a crash keeps it), and the whole reply
when the stream ends, however it ends: finished, stopped by the user, left by its client,
cut by the server stopping (``interrupted``), or failed (``error``). The HTTP response only
reads what the task hands over, through a mailbox that merges deltas a slow client has
not taken yet, so memory stays bounded and a slow reader never slows the model.

Stopping cancels the task's anyio cancel scope; closing the engine stream then aborts the
request, and the final write runs shielded from any further cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

from ollm.db.models import MessageStatus
from ollm.db.schemas import MessagePublic, MessageUpdate
from ollm.engine.client import Mailbox
from ollm.engine.outputs import RequestOutput
from ollm.services.inference.completions import Generation

log = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 1.0

StopReason = Literal["stopped", "disconnected", "shutdown"]
FinishReason = Literal["stop", "length", "stopped", "disconnected", "shutdown", "error"]
SaveReply = Callable[[MessageUpdate], Awaitable[MessagePublic]]


# -- what the client is sent (framed as SSE by the API) ------------------------------------


class Usage(BaseModel):
    """Token counts of one reply."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_prompt_tokens: int = Field(
        0, description="Prompt tokens whose KV was reused (in memory or from disk), not computed."
    )


class Timings(BaseModel):
    """How fast the reply came: time to first token (queueing included), decode speed,
    and the whole duration."""

    ttft_ms: float | None
    tokens_per_second: float | None
    duration_ms: float


class StartEvent(BaseModel):
    """First event: the saved user turn (None for a regenerated reply) and the assistant
    turn being written, and how many earlier turns were left out to fit the context."""

    type: Literal["start"] = "start"
    chat_id: str
    user_message: MessagePublic | None
    message: MessagePublic
    dropped_turns: int


class QueueEvent(BaseModel):
    """The request waits for a free slot; ``position`` 1 is next."""

    type: Literal["queue"] = "queue"
    position: int


class DeltaEvent(BaseModel):
    """More text of the reply."""

    type: Literal["delta"] = "delta"
    content: str


class DoneEvent(BaseModel):
    """Last event: the reply as saved, why it ended, usage and timings.

    ``finish_reason``: ``stop``/``length`` (complete), ``stopped`` (by the user),
    ``disconnected``, ``shutdown`` (interrupted), or ``error`` (see ``error``).
    """

    type: Literal["done"] = "done"
    message: MessagePublic
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    dropped_turns: int
    error: dict[str, Any] | None = None


ReplyEvent = StartEvent | QueueEvent | DeltaEvent | DoneEvent


@dataclass(slots=True)
class _Progress:
    """What the task has seen of the stream so far."""

    parts: list[str]
    started: float
    first_token_at: float | None = None
    last: RequestOutput | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)


class RunningReply:
    """One assistant reply in flight for one chat; :meth:`events` is what the client sees."""

    def __init__(
        self,
        *,
        start: StartEvent,
        generation: Generation,
        save: SaveReply,
        on_end: Callable[[], None],
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
    ) -> None:
        self.start_event = start
        self.chat_id = start.chat_id
        self._generation = generation
        self._save = save
        self._on_end = on_end
        self._checkpoint_seconds = checkpoint_seconds
        self._mailbox = Mailbox()
        self._scope = anyio.CancelScope()
        self._stop_reason: StopReason | None = None
        self._task: asyncio.Task[DoneEvent] | None = None

    def begin(self) -> None:
        """Start draining the engine stream (on the running event loop)."""
        self._task = asyncio.ensure_future(self._run())

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def stop(self, reason: StopReason = "stopped") -> DoneEvent:
        """Abort the generation, save what was written as interrupted, and return it."""
        assert self._task is not None, "begin() first"
        if not self._task.done() and self._stop_reason is None:
            self._stop_reason = reason
            self._scope.cancel()
        return await asyncio.shield(self._task)

    async def events(self) -> AsyncIterator[ReplyEvent]:
        """The client's view: start, queue positions, deltas, then done.

        Leaving early (the client disconnected) stops the reply; it is then saved as
        interrupted with the text so far.
        """
        try:
            yield self.start_event
            while True:
                output = await self._mailbox.get()
                if output.queue_position is not None:
                    yield QueueEvent(position=output.queue_position)
                if output.text:
                    yield DeltaEvent(content=output.text)
                if output.finished:
                    break
            assert self._task is not None
            yield await asyncio.shield(self._task)
        finally:
            if self._task is not None and not self._task.done():
                with anyio.CancelScope(shield=True):
                    await self.stop("disconnected")

    # -- the task --------------------------------------------------------------------------

    async def _run(self) -> DoneEvent:
        progress = _Progress(parts=[], started=time.monotonic())
        try:
            with self._scope:
                await self._drain(progress)
            with anyio.CancelScope(shield=True):
                await self._generation.stream.aclose()  # aborts the request if unfinished
                return await self._finish(progress)
        except Exception:
            log.exception("reply in chat %s could not be saved", self.chat_id)
            raise
        finally:
            self._on_end()
            # The reader's cue to take the task's result; nothing awaits after this, so
            # the task is done by the time the reader runs.
            self._mailbox.put(RequestOutput(self._generation.request_id, finish_reason="end"))

    async def _drain(self, progress: _Progress) -> None:
        next_checkpoint = time.monotonic() + self._checkpoint_seconds
        async for output in self._generation.stream:
            progress.last = output
            if output.text:
                progress.parts.append(output.text)
                if progress.first_token_at is None:
                    progress.first_token_at = time.monotonic()
            # The reader ends on the task's own last word (after the save), not the engine's.
            self._mailbox.put(replace(output, finish_reason=None))
            if output.finished:
                return
            if progress.parts and time.monotonic() >= next_checkpoint:
                with anyio.CancelScope(shield=True):
                    await self._save(MessageUpdate(content=progress.text))
                next_checkpoint = time.monotonic() + self._checkpoint_seconds

    async def _finish(self, progress: _Progress) -> DoneEvent:
        """Save the reply in its final state and describe it for the client."""
        reason, status, error = self._outcome(progress.last)
        usage = self._usage(progress.last)
        timings = self._timings(progress, usage.completion_tokens)
        message = await self._save(
            MessageUpdate(
                content=progress.text,
                status=status,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                ttft_ms=timings.ttft_ms,
                tokens_per_second=timings.tokens_per_second,
            )
        )
        return DoneEvent(
            message=message,
            finish_reason=reason,
            usage=usage,
            timings=timings,
            dropped_turns=self.start_event.dropped_turns,
            error=error,
        )

    def _outcome(
        self, last: RequestOutput | None
    ) -> tuple[FinishReason, MessageStatus, dict[str, Any] | None]:
        if self._stop_reason is not None:
            return self._stop_reason, MessageStatus.INTERRUPTED, None
        engine_reason = last.finish_reason if last is not None else None
        if engine_reason in ("stop", "length"):
            return engine_reason, MessageStatus.COMPLETE, None  # type: ignore[return-value]
        if engine_reason == "abort":  # the engine is shutting down
            return "shutdown", MessageStatus.INTERRUPTED, None
        log.error("reply in chat %s failed in the engine: %s", self.chat_id, last and last.error)
        error = {
            "message": "the model failed while generating this reply; please retry",
            "type": "server_error",
            "code": "engine_error",
        }
        return "error", MessageStatus.ERROR, error

    def _usage(self, last: RequestOutput | None) -> Usage:
        prompt = (last.num_prompt_tokens if last else 0) or self._generation.num_prompt_tokens
        completion = last.num_output_tokens if last else 0
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_prompt_tokens=last.num_cached_tokens if last else 0,
        )

    @staticmethod
    def _timings(progress: _Progress, completion_tokens: int) -> Timings:
        now = time.monotonic()
        ttft = None
        if progress.first_token_at is not None:
            ttft = (progress.first_token_at - progress.started) * 1000
        speed = None
        if progress.first_token_at is not None and completion_tokens > 1:
            decoding = now - progress.first_token_at
            speed = (completion_tokens - 1) / decoding if decoding > 0 else None
        return Timings(
            ttft_ms=ttft, tokens_per_second=speed, duration_ms=(now - progress.started) * 1000
        )
