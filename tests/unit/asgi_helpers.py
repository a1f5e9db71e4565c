"""The real app over fake models for the API dialects' tests, and driving the ASGI app
by hand for tests where the client leaves mid-response."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from ollm.api.app import create_app
from ollm.backends.fake import FakeBackend
from ollm.services.models.service import ModelEntry, ModelService
from ollm.settings import EngineSettings, Settings


class Harness:
    """An app with fake models, its backends, and an httpx client bound to it."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, backends: list[FakeBackend]):
        self.app = app
        self.client = client
        self.backends = backends

    @property
    def backend(self) -> FakeBackend:
        return self.backends[0]

    @property
    def models(self) -> ModelService:
        return self.app.state.models


@asynccontextmanager
async def running_app(
    tmp_path: Path,
    *,
    max_running: int = 4,
    max_waiting: int = 8,
    context: int = 256,
    raise_app_exceptions: bool = True,
    settings: dict[str, Any] | None = None,
    **fake: Any,
) -> AsyncIterator[Harness]:
    """The app with ``fake:1`` and ``fake:2`` (the fake backend's chat template), its
    lifespan running; ``context`` is each sequence's context, ``settings`` adds server
    settings, ``fake`` FakeBackend fields."""
    weights = tmp_path / "fake.gguf"
    weights.write_bytes(b"not really a model")
    engine = EngineSettings(
        max_running=max_running, max_waiting=max_waiting, context_per_sequence=context, threads=1
    )
    server = Settings(home=tmp_path, default_model="fake:1", engine=engine, **(settings or {}))
    backends: list[FakeBackend] = []

    def loader(_path: Path, eng: EngineSettings) -> FakeBackend:
        backend = FakeBackend(
            num_sequences=eng.max_running, context_per_sequence=eng.context_per_sequence, **fake
        )
        backends.append(backend)
        return backend

    entries = [ModelEntry("fake:1", weights), ModelEntry("fake:2", weights)]
    models = ModelService(server, entries=entries, loader=loader)
    app = create_app(server, models=models)
    transport = httpx.ASGITransport(app, raise_app_exceptions=raise_app_exceptions)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://localhost") as client,
    ):
        yield Harness(app, client, backends)


async def call_and_disconnect(
    app: FastAPI, path: str, body: dict[str, Any], *, after_chunks: int
) -> list[dict[str, Any]]:
    """Drive the ASGI app directly; the client leaves after ``after_chunks`` body chunks."""
    payload = json.dumps(body).encode()
    leave = asyncio.Event()
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        chunks = [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
        if len(chunks) >= after_chunks:
            leave.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"localhost")],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "state": {},
    }
    if after_chunks == 0:
        asyncio.get_running_loop().call_later(0.2, leave.set)
    await app(scope, receive, send)
    return sent


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
