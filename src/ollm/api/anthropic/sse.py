"""Anthropic's SSE framing: named events (``event: <type>``), no ``[DONE]`` terminator.

Headers are gone by the time an event source fails, so a failure becomes one last
``event: error`` with Anthropic's error body, which the ``anthropic`` client raises as the
status error of that type (``overloaded_error`` when the server is stopping).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio

from ollm.api.http.errors import anthropic_error_body
from ollm.errors import OllmError

log = logging.getLogger(__name__)

STREAM_FAILED = "The server had an error while streaming."


def sse_named_event(payload: Mapping[str, Any]) -> str:
    """One event, named after the payload's ``type``. JSON has no raw newlines."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {payload['type']}\ndata: {data}\n\n"


async def anthropic_sse(events: AsyncIterator[Mapping[str, Any]]) -> AsyncIterator[str]:
    """Frame ``events``; a failure midway ends the stream with an ``error`` event."""
    try:
        async for event in events:
            yield sse_named_event(event)
    except OllmError as exc:
        log.warning("stream ended with %s: %s", type(exc).__name__, exc.message)
        yield sse_named_event(anthropic_error_body(exc.message, exc.status_code))
    except Exception:
        log.exception("stream failed")
        yield sse_named_event(anthropic_error_body(STREAM_FAILED, 500))
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()
