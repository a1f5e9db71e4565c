"""A generation's hold on its model: taken before the request starts, given back when its
stream ends, however it ends (last delta, error, client gone, or the stream forgotten).

While any hold is out, the model is never unloaded, so a running stream is never cut off.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from ollm.engine.client import RequestStream
from ollm.engine.outputs import RequestOutput


class Lease:
    """Calls ``release`` exactly once, whoever asks first."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    @property
    def released(self) -> bool:
        return self._release is None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


def _release_forgotten(loop: asyncio.AbstractEventLoop, lease: Lease) -> None:
    # A stream garbage-collected without being finished or closed: give the model back
    # on the event loop's own thread, where residency state lives.
    if not lease.released and not loop.is_closed():
        loop.call_soon_threadsafe(lease.release)


class LeasedStream:
    """Wraps a :class:`RequestStream` (same interface) and releases its lease when it ends."""

    def __init__(self, stream: RequestStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self.request_id = stream.request_id
        self.lease = Lease(release)
        self._finalizer = weakref.finalize(
            self, _release_forgotten, asyncio.get_running_loop(), self.lease
        )

    def __aiter__(self) -> LeasedStream:
        return self

    async def __anext__(self) -> RequestOutput:
        try:
            output = await self._stream.__anext__()
        except BaseException:  # finished earlier, engine error, or cancelled: all end it
            self._end()
            raise
        if output.finished:
            self._end()
        return output

    async def aclose(self) -> None:
        """Abort the request if unfinished, and release the model."""
        try:
            await self._stream.aclose()
        finally:
            self._end()

    async def __aenter__(self) -> LeasedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _end(self) -> None:
        self._finalizer.detach()
        self.lease.release()
