"""Streaming plumbing shared by the API dialects: SSE framing and disconnect -> abort.

A generation must never outlive the client that asked for it. For streamed responses,
Starlette cancels the response task when the client disconnects; :func:`outputs` turns
that cancellation (or any other exit) into ``RequestStream.aclose()``, which aborts the
request in the engine. Non-streamed responses have no task Starlette would cancel, so
:func:`cancel_on_disconnect` waits for the ASGI ``http.disconnect`` message itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import aclosing
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Send

from ollm.api.http.errors import error_body, ollm_error_body
from ollm.engine.client import RequestStream
from ollm.engine.outputs import RequestOutput
from ollm.errors import EngineError, OllmError, ShuttingDownError

log = logging.getLogger(__name__)

T = TypeVar("T")

SSE_DONE = "data: [DONE]\n\n"


def sse_event(payload: BaseModel | Mapping[str, Any]) -> str:
    """One ``data:`` event. JSON never contains a raw newline, so one line suffices."""
    if isinstance(payload, BaseModel):
        data = payload.model_dump_json()
    else:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n"


def generation_failure(output: RequestOutput) -> OllmError:
    """The error for a generation that ended neither by stop nor by length (either
    dialect): an abort means the server is stopping; anything else is an engine failure,
    logged here with its detail and shown to the client without it."""
    if output.finish_reason == "abort":
        return ShuttingDownError("the request was stopped because the server is shutting down")
    log.error("request %s failed in the engine: %s", output.request_id, output.error)
    return EngineError("the model failed while generating this response; please retry")


async def outputs(stream: RequestStream) -> AsyncIterator[RequestOutput]:
    """Iterate ``stream``; however iteration ends (done, error, cancel), abort the request."""
    try:
        async for output in stream:
            yield output
    finally:
        with anyio.CancelScope(shield=True):
            await stream.aclose()  # a no-op when the request already finished


async def merged(sources: list[AsyncIterator[T]]) -> AsyncIterator[T]:
    """The items of every source as each arrives (the choices of an ``n`` > 1 request).

    Each source runs in its own task; the first failure ends the merge with that error,
    and however the merge ends (done, error, client gone) every source is closed, so
    every generation behind them is aborted."""
    if len(sources) == 1:
        async with aclosing(sources[0]) as only:
            async for item in only:
                yield item
        return
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()

    async def pump(source: AsyncIterator[T]) -> None:
        try:
            async with aclosing(source) as items:
                async for item in items:
                    await queue.put((False, item))
        except Exception as exc:
            await queue.put((True, exc))
            return
        await queue.put((True, None))

    tasks = [asyncio.ensure_future(pump(source)) for source in sources]
    try:
        remaining = len(tasks)
        while remaining:
            done, item = await queue.get()
            if not done:
                yield item
            elif item is not None:
                raise item
            else:
                remaining -= 1
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)


async def sse_stream(events: AsyncIterator[BaseModel | Mapping[str, Any]]) -> AsyncIterator[str]:
    """Frame ``events`` as SSE, ending with ``[DONE]``.

    Headers are gone by the time ``events`` fails, so an error becomes one last
    ``data: {"error": ...}`` event before ``[DONE]``.
    """
    try:
        async for event in events:
            yield sse_event(event)
    except OllmError as exc:
        log.warning("stream ended with %s: %s", type(exc).__name__, exc.message)
        yield sse_event(ollm_error_body(exc))
    except Exception:
        log.exception("stream failed")
        yield sse_event(
            error_body("The server had an error while streaming.", error_type="server_error")
        )
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()
    yield SSE_DONE


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that closes its body iterator however the response ends.

    Starlette leaves an interrupted body iterator to the garbage collector; closing it
    here runs the generators' ``finally`` blocks (and so the engine abort) at once.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], headers: Mapping[str, str] | None = None):
        base = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, headers={**base, **(headers or {})})

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Raises ``ClientDisconnect`` in that case (answered with a bodiless 499 that nobody
    reads). Meant for non-streamed requests whose body has already been read.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        raise ClientDisconnect()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
        # Let the cancelled work run its finally blocks (the engine abort) before returning.
        await asyncio.gather(task, watcher, return_exceptions=True)
