"""The real app over the fake backend and a real SQLite file, for the ``/api/v1`` tests.

``v1_app()`` runs the lifespan (migrations, local user, services) and hands out httpx
clients bound to the app, one cookie jar each, so several people can use one server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from ollm import security
from ollm.api.app import create_app
from ollm.backends.base import BatchItem
from ollm.backends.fake import FakeBackend
from ollm.services.chats.service import ChatService
from ollm.services.models.service import ModelEntry, ModelService
from ollm.settings import EngineSettings, Settings

REPLY = "Hello from the fake model."
PASSWORD = "correct horse battery"


@dataclass
class SlowFakeBackend(FakeBackend):
    """The fake model, taking ``delay`` seconds per forward pass (on the engine thread),
    and remembering every prompt it was given as text. With ``numbered``, the n-th request
    is answered "reply number n"."""

    delay: float = 0.0
    numbered: bool = False
    prompts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.numbered:
            self.reply = lambda _prompt: f"reply number {len(self.prompts)}"

    def decode(self, items: Sequence[BatchItem]) -> list[int | None]:
        for item in items:
            if item.sample and item.num_generated == 0:  # the whole prompt is in the KV now
                # (a reused prefix is already there: only the new tokens are fed)
                tokens = self._kv.get(item.seq_id, [])[: item.start_pos] + list(item.tokens)
                self.prompts.append(bytes(t - 2 for t in tokens if t >= 2).decode())
        if self.delay:
            time.sleep(self.delay)
        return super().decode(items)


def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 at minimal cost: these tests are about the API, not the hash's strength."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    dummy = hasher.hash("dummy")
    monkeypatch.setattr(security, "_hasher", lambda: hasher)
    monkeypatch.setattr(security, "_dummy_hash", lambda: dummy)


@dataclass
class Harness:
    """A running app, its fake backends, and a way to get clients for it."""

    app: FastAPI
    transport: httpx.ASGITransport
    backends: list[SlowFakeBackend]
    client: httpx.AsyncClient

    @property
    def backend(self) -> SlowFakeBackend:
        return self.backends[0]

    @property
    def chats(self) -> ChatService:
        return self.app.state.chats

    @asynccontextmanager
    async def new_client(self, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
        """Another browser: its own cookie jar."""
        async with httpx.AsyncClient(
            transport=self.transport, base_url="http://localhost", **kwargs
        ) as client:
            yield client


@asynccontextmanager
async def v1_app(
    tmp_path: Path,
    *,
    reply: Callable[[list[int]], str] = lambda _prompt: REPLY,
    delay: float = 0.0,
    max_running: int = 4,
    max_waiting: int = 8,
    context: int = 256,
    checkpoint_seconds: float | None = None,
    numbered_replies: bool = False,
    fail_on_call: int | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """The app with model ``fake:1`` (it has a chat template), lifespan running."""
    weights = tmp_path / "fake.gguf"
    weights.write_bytes(b"not really a model")
    engine = EngineSettings(
        max_running=max_running, max_waiting=max_waiting, context_per_sequence=context, threads=1
    )
    config = Settings(
        home=tmp_path, default_model="fake:1", engine=engine, preload_default_model=False
    )
    config = config.model_copy(update=settings)
    backends: list[SlowFakeBackend] = []

    def loader(_path: Path, eng: EngineSettings) -> SlowFakeBackend:
        backend = SlowFakeBackend(
            num_sequences=eng.max_running,
            context_per_sequence=eng.context_per_sequence,
            reply=reply,
            delay=delay,
            numbered=numbered_replies,
            fail_on_call=fail_on_call,
        )
        backends.append(backend)
        return backend

    models = ModelService(config, entries=[ModelEntry("fake:1", weights)], loader=loader)
    app = create_app(config, models=models)
    transport = httpx.ASGITransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        if checkpoint_seconds is not None:
            app.state.chats._checkpoint_seconds = checkpoint_seconds
        yield Harness(app, transport, backends, client)


class LiveStream:
    """One streamed request driven through ASGI directly, read event by event as the app
    sends it (httpx's ASGI transport only hands the body over once it is complete).

    ``disconnect()`` is the client leaving; leaving the ``async with`` does it too.
    ``start_delay`` makes sending the response head take that long, as a real socket may.
    """

    def __init__(
        self,
        app: FastAPI,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        start_delay: float = 0.0,
    ) -> None:
        self._app = app
        self._path = path
        self._payload = json.dumps(body).encode()
        self._headers = {"content-type": "application/json", "host": "localhost", **(headers or {})}
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._leave = asyncio.Event()
        self._buffer = ""
        self._task: asyncio.Task[None] | None = None
        self._start_delay = start_delay
        self.status: int | None = None

    async def __aenter__(self) -> LiveStream:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.disconnect()
        assert self._task is not None
        await self._task

    def disconnect(self) -> None:
        self._leave.set()

    async def _run(self) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": self._payload, "more_body": False}
            await self._leave.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                await asyncio.sleep(self._start_delay)
            elif message["type"] == "http.response.body":
                self._chunks.put_nowait(message.get("body", b""))

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": self._path,
            "raw_path": self._path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in self._headers.items()],
            "client": ("127.0.0.1", 5000),
            "server": ("test", 80),
            "state": {},
        }
        try:
            await self._app(scope, receive, send)
        finally:
            self._chunks.put_nowait(None)

    async def next_event(self) -> Any:
        """The next SSE payload (``"[DONE]"`` as a string); None once the body ended."""
        while "\n\n" not in self._buffer:
            chunk = await asyncio.wait_for(self._chunks.get(), timeout=30)
            if chunk is None:
                return None
            self._buffer += chunk.decode()
        block, self._buffer = self._buffer.split("\n\n", 1)
        data = block.removeprefix("data: ")
        return data if data == "[DONE]" else json.loads(data)

    async def until(self, event_type: str) -> list[Any]:
        """Events up to and including the first of ``event_type``."""
        events: list[Any] = []
        while (event := await self.next_event()) is not None:
            events.append(event)
            if isinstance(event, dict) and event.get("type") == event_type:
                return events
        raise AssertionError(f"no {event_type!r} event in {events}")

    async def rest(self) -> list[Any]:
        """Every remaining event, to the end of the body."""
        events = []
        while (event := await self.next_event()) is not None:
            events.append(event)
        return events


def sse_events(body: str) -> list[Any]:
    """An SSE body as JSON payloads, with ``"[DONE]"`` kept as a string."""
    events = []
    for block in body.strip("\n").split("\n\n"):
        assert block.startswith("data: "), block
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def done_event(body: str) -> dict[str, Any]:
    """The ``done`` event of a finished SSE reply (which must end with ``[DONE]``)."""
    events = sse_events(body)
    assert events[-1] == "[DONE]", events
    assert events[-2]["type"] == "done", events[-2]
    return events[-2]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """An OpenAI-shaped error with this status (and code)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error


async def signup(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    """Sign up (which logs in) and arm the client with the CSRF header."""
    response = await client.post(
        "/api/v1/auth/signup", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    client.headers["X-CSRF-Token"] = client.cookies["csrf_token"]
    return response.json()["user"]
