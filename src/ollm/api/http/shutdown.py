"""Graceful shutdown: stop admitting, let running work finish within a grace, then interrupt.

The order on SIGTERM (or a first Ctrl+C), run by :class:`DrainingServer`:

1. :meth:`Drain.begin`: from now on :class:`DrainMiddleware` answers every new request
   with 503 and ``Retry-After`` in its dialect's error shape (``/health`` still answers),
   while the listening socket stays open so clients are told rather than refused;
2. wait until the HTTP requests admitted before the drain have ended, at most
   ``shutdown_grace`` seconds;
3. interrupt what still runs: chat replies are stopped and saved ``interrupted`` with
   their text so far, then the engines stop, so every other stream ends with its
   dialect's "shutting down" error event;
4. hand over to uvicorn's own shutdown: it closes the socket (new connections are
   refused from here on), waits up to ``timeout_graceful_shutdown`` for responses to
   finish writing, then runs the lifespan shutdown, which closes the database.

A second signal skips the wait. uvicorn alone would close the socket first and keep
streams running until its timeout, then cancel them mid-write.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import signal
import time
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ollm.api.http.errors import error_body, shaped_error_body

log = logging.getLogger(__name__)

ALWAYS_ANSWERED = frozenset({"/health"})
"""Paths served even while draining (liveness probes must not fail during a drain)."""


class Drain:
    """Whether the server still admits requests, and how many admitted ones are running."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait: the drain's length, at least one."""
        return max(1, math.ceil(self.grace))

    def begin(self) -> None:
        """Stop admitting new requests (idempotent)."""
        if not self.draining:
            self.draining = True
            log.info(
                "draining: refusing new requests, %d running get %.0f s to finish",
                self.in_flight,
                self.grace,
            )

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> bool:
        """Wait for the running requests, at most ``grace`` seconds; True if they all ended."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=self.grace)
        except TimeoutError:
            return False
        return True


def shutting_down_response(path: str, retry_after: int) -> JSONResponse:
    """503 in the dialect's error shape, with ``Retry-After``."""
    message = "the server is shutting down; retry on another instance or later"
    body = shaped_error_body(
        path, 503, error_body(message, error_type="server_error", code="shutting_down")
    )
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after)})


class DrainMiddleware:
    """Counts HTTP requests in flight and refuses new ones once the drain has begun."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ALWAYS_ANSWERED:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await shutting_down_response(scope["path"], self.drain.retry_after)(
                scope, receive, send
            )
            return
        self.drain.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.leave()


async def drain_then_interrupt(drain: Drain, interrupt: Callable[[], Awaitable[None]]) -> None:
    """Steps 1-3 of the module doc: refuse, wait up to the grace, interrupt the rest."""
    drain.begin()
    started = time.monotonic()
    if await drain.wait_idle():
        log.info("drained: every request ended within %.1f s", time.monotonic() - started)
        return
    log.warning(
        "grace of %.0f s over: interrupting %d running request(s)", drain.grace, drain.in_flight
    )
    await interrupt()


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain before its own shutdown (see the module doc)."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        interrupt: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(config)
        self._drain = drain
        self._interrupt = interrupt
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First SIGTERM/SIGINT: drain, then exit. A second one: exit now."""
        if self._loop is None or self._drain_requested or self.should_exit:
            if sig == signal.SIGINT and self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        # The signal is not recorded for re-raising after serve(), as uvicorn does: a
        # re-raised SIGTERM would kill the process after a clean shutdown (exit -15, not 0).
        self._drain_requested = True
        # A fresh context: the signal may land while a request's task runs, and the drain's
        # log lines must not carry that request's id.
        self._loop.call_soon_threadsafe(self._start_drain, context=contextvars.Context())

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain_and_exit())

    async def _drain_and_exit(self) -> None:
        try:
            await drain_then_interrupt(self._drain, self._interrupt)
        except Exception:
            log.exception("drain failed; shutting down anyway")
        finally:
            self.should_exit = True
