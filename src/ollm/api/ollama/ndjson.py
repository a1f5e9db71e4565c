"""NDJSON framing for the Ollama dialect: one JSON object per line.

Headers are gone by the time a stream fails, so a failure becomes one last
``{"error": "..."}`` line, which the official client raises as ``ResponseError``.
Aborting on disconnect comes from :class:`ollm.api.http.streaming.EventStreamResponse`,
whose closing of the body iterator this response inherits.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from pydantic import BaseModel

from ollm.api.http.errors import ollama_error_body
from ollm.api.http.streaming import EventStreamResponse
from ollm.errors import OllmError

log = logging.getLogger(__name__)

STREAM_FAILED = "The server had an error while streaming."


def ndjson_line(payload: BaseModel | Mapping[str, Any]) -> str:
    """One line of NDJSON. JSON never contains a raw newline, so one line suffices."""
    if isinstance(payload, BaseModel):
        return payload.model_dump_json(exclude_none=True) + "\n"
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n"


async def ndjson_stream(
    events: AsyncIterator[BaseModel | Mapping[str, Any]],
) -> AsyncIterator[str]:
    """Frame ``events`` as NDJSON; an exception becomes a final error line."""
    try:
        async for event in events:
            yield ndjson_line(event)
    except OllmError as exc:
        log.warning("stream ended with %s: %s", type(exc).__name__, exc.message)
        yield ndjson_line(ollama_error_body(exc.message))
    except Exception:
        log.exception("stream failed")
        yield ndjson_line(ollama_error_body(STREAM_FAILED))
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


class NDJSONResponse(EventStreamResponse):
    """``application/x-ndjson``, closing its body iterator however the response ends."""

    media_type = "application/x-ndjson"
