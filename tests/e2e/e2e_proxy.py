"""A proxy in front of the real server that swaps the words of streamed replies.

A 135M model will not write a given text on request, yet some tests need the page to
stream one (hostile markup, rich Markdown). :class:`SwappingProxy` passes every request
through to the real server, except that a reply streamed by
``POST /api/v1/chats/{id}/messages`` has its text replaced by ``text``, cut into small
pieces (through tags, attributes and table rows) sent a few milliseconds apart, so the page
renders it while streaming, as it would a model's; and reading that chat back afterwards
shows the same text. The model, the server and the stream's timing are real; only the
words differ. (Playwright's ``page.route`` cannot do this: it hands the page the whole
response at once, never rendered mid-stream.)
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from e2e_ui import free_port, wait_for


class SwappingProxy:
    """ASGI app: the real server at ``upstream``, with streamed replies saying ``text``."""

    PIECE = 9  # characters per delta
    PAUSE = 0.02  # seconds between deltas

    def __init__(self, upstream: str, text: str) -> None:
        self.upstream = upstream
        self.text = text
        self.swapped: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        query = scope["query_string"].decode()
        skip = {b"host", b"content-length", b"accept-encoding"}
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in skip]
        headers.append(("accept-encoding", "identity"))
        async with httpx.AsyncClient(base_url=self.upstream, timeout=120) as client:
            request = client.build_request(
                method, path + (f"?{query}" if query else ""), headers=headers, content=body
            )
            response = await client.send(request, stream=True)
            try:
                drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
                out = [
                    (k.encode(), v.encode())
                    for k, v in response.headers.multi_items()
                    if k.lower() not in drop
                ]
                start = {"type": "http.response.start", "status": response.status_code}
                await send({**start, "headers": out})
                async for chunk in self._body(method, path, response):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except httpx.HTTPError:
                pass  # the page went away mid-stream (its context closed): nothing to do
            finally:
                await response.aclose()

    async def _body(self, method: str, path: str, response: httpx.Response) -> AsyncIterator[bytes]:
        stream = re.fullmatch(r"/api/v1/chats/([^/]+)/messages", path)
        chat = re.fullmatch(r"/api/v1/chats/([^/]+)", path)
        is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
        if method == "POST" and stream and is_sse:
            self.swapped.add(stream.group(1))
            text = self.text
            pieces = [text[i : i + self.PIECE] for i in range(0, len(text), self.PIECE)]
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    yield (line + "\n").encode()
                    continue
                for event in self._swap_event(json.loads(line.removeprefix("data: ")), pieces):
                    yield f"data: {json.dumps(event)}\n\n".encode()
                    if event["type"] == "delta":
                        await asyncio.sleep(self.PAUSE)
        elif method == "GET" and chat and chat.group(1) in self.swapped and response.is_success:
            yield self._swap_chat(await response.aread())
        else:
            async for chunk in response.aiter_bytes():
                yield chunk

    def _swap_event(self, event: dict[str, Any], pieces: list[str]) -> list[dict[str, Any]]:
        """What the page gets instead of one event of the real stream: all the pieces in
        place of the first delta, nothing for the others, the text in the final message."""
        if event.get("type") == "delta":
            sent = [{"type": "delta", "content": p} for p in pieces]
            pieces.clear()
            return sent
        if event.get("type") == "done":
            event["message"]["content"] = self.text
        return [event]

    def _swap_chat(self, body: bytes) -> bytes:
        chat = json.loads(body)
        for message in chat.get("messages", []):
            if message["role"] == "assistant":
                message["content"] = self.text
        return json.dumps(chat).encode()


@contextmanager
def serve_proxy(app: SwappingProxy) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; its URL. Stopped on exit."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, timeout=10), "the proxy did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
