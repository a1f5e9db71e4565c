"""Fakes for the CLI tests (no tests here): the Ollama API as an ``httpx.MockTransport``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


def ndjson(events: Iterable[dict[str, Any]]) -> bytes:
    """Events as NDJSON bytes."""
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def chat_events(*pieces: str, **final: Any) -> list[dict[str, Any]]:
    """An ``/api/chat`` stream that writes ``pieces``, then a ``done`` event."""
    events: list[dict[str, Any]] = [
        {"model": "m", "message": {"role": "assistant", "content": piece}, "done": False}
        for piece in pieces
    ]
    done = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True}
    events.append({**done, "done_reason": "stop", "eval_count": len(pieces), **final})
    return events


class FakeServer:
    """Routes ``(method, path)`` to canned answers and records every request body."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[tuple[str, str, Any]] = []

    def json(self, method: str, path: str, body: Any, status: int = 200) -> None:
        """Answer ``method path`` with a JSON body."""
        self.routes[(method, path)] = lambda _request: httpx.Response(status, json=body)

    def stream(self, method: str, path: str, events: Iterable[dict[str, Any]]) -> None:
        """Answer ``method path`` with an NDJSON stream (fresh on every request)."""
        items = list(events)
        self.routes[(method, path)] = lambda _request: httpx.Response(
            200, content=ndjson(items), headers={"content-type": "application/x-ndjson"}
        )

    def handler(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` with a function of the request."""
        self.routes[(method, path)] = handler

    def bodies(self, path: str) -> list[Any]:
        """The JSON bodies sent to ``path``, oldest first."""
        return [body for _method, p, body in self.requests if p == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"error": f"no route {request.url.path}"})
        return route(request)

    @property
    def transport(self) -> httpx.MockTransport:
        """The transport to hand to the client or the CLI context."""
        return httpx.MockTransport(self)


def interrupting_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield ``chunks``, then raise ``KeyboardInterrupt`` as a Ctrl+C mid-reply would."""
    yield from chunks
    raise KeyboardInterrupt
