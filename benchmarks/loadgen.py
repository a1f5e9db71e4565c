"""The load generator: concurrent streaming requests (chat or plain completions) against
an HTTP server speaking OpenAI's SSE."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

from benchmarks.config import PREFILL_PROBE_LEAD_TOKENS, REQUEST_TIMEOUT_S
from benchmarks.workload import RequestSpec, StreamRecord, chat_body, probe_specs


def apply_event(record: StreamRecord, payload: dict[str, Any], now: float) -> bool:
    """Fold one SSE JSON event into ``record``; True when it carried content."""
    if "error" in payload:
        record.error = f"error event: {json.dumps(payload['error'])[:300]}"
        return False
    usage = payload.get("usage")
    if usage:
        record.completion_tokens = usage.get("completion_tokens")
        record.prompt_tokens = usage.get("prompt_tokens")
    has_content = False
    for choice in payload.get("choices") or []:
        # Chat chunks carry delta.content; /v1/completions chunks carry text.
        if (choice.get("delta") or {}).get("content") or choice.get("text"):
            has_content = True
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    if has_content:
        record.chunks.append(now)
    return has_content


async def stream_sse(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    request_id: str,
    on_content: asyncio.Event | None = None,
    after_chunks: int = 0,
) -> StreamRecord:
    """POST one streaming request to ``path`` and time every content chunk.

    When ``on_content`` is given it is set once ``after_chunks`` content chunks arrived.
    """
    record = StreamRecord(request_id, time.perf_counter())
    try:
        async with client.stream("POST", path, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                record.error = f"HTTP {response.status_code}: {text[:300]}"
                return record
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    record.saw_done = True
                    break
                content = apply_event(record, json.loads(data), time.perf_counter())
                if content and on_content is not None and len(record.chunks) >= after_chunks:
                    on_content.set()
        if not record.saw_done and record.error is None:
            record.error = "stream ended without data: [DONE]"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.finish = time.perf_counter()
        if on_content is not None:
            on_content.set()  # never leave a waiter hanging on a failed stream
    return record


async def stream_chat(
    client: httpx.AsyncClient,
    spec: RequestSpec,
    model: str,
    on_content: asyncio.Event | None = None,
    after_chunks: int = 0,
) -> StreamRecord:
    """Send one streaming chat request (see :func:`stream_sse`)."""
    return await stream_sse(
        client,
        "/v1/chat/completions",
        chat_body(spec, model),
        spec.request_id,
        on_content,
        after_chunks,
    )


async def run_concurrent(
    base_url: str, specs: Sequence[RequestSpec], model: str
) -> list[StreamRecord]:
    """Fire all ``specs`` at once and wait for every stream to finish."""
    limits = httpx.Limits(max_connections=len(specs) + 4, max_keepalive_connections=0)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        return list(await asyncio.gather(*(stream_chat(client, s, model) for s in specs)))


async def prefill_probe(base_url: str, model: str) -> tuple[StreamRecord, StreamRecord]:
    """Start a long stream, then a ~2,000-token prompt once the stream is running."""
    stream_spec, long_spec = probe_specs()
    running = asyncio.Event()
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        first = asyncio.create_task(
            stream_chat(client, stream_spec, model, running, PREFILL_PROBE_LEAD_TOKENS)
        )
        await running.wait()
        second = await stream_chat(client, long_spec, model)
        return await first, second
