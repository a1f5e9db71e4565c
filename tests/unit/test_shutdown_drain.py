"""The drain of a graceful shutdown: new requests get 503 in their dialect's shape."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from ollm.api.http.shutdown import Drain, DrainMiddleware, drain_then_interrupt

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _client(drain: Drain, release: asyncio.Event | None = None) -> httpx.AsyncClient:
    async def ok(_request: object) -> JSONResponse:
        if release is not None:
            await release.wait()
        return JSONResponse({"ok": True})

    routes = [Route(path, ok) for path in ("/health", "/v1/models", "/api/tags", "/api/v1/chats")]
    app = DrainMiddleware(Starlette(routes=routes), drain)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


async def test_draining_refuses_in_each_dialect_but_health_answers() -> None:
    drain = Drain(grace=2.5)
    drain.begin()
    async with _client(drain) as client:
        openai = await client.get("/v1/models")
        ollama = await client.get("/api/tags")
        own = await client.get("/api/v1/chats")
        health = await client.get("/health")
    assert openai.status_code == ollama.status_code == own.status_code == 503
    assert openai.headers["Retry-After"] == "3"
    assert openai.json()["error"]["code"] == "shutting_down"
    assert own.json()["error"]["code"] == "shutting_down"
    assert isinstance(ollama.json()["error"], str)
    assert health.status_code == 200


async def test_running_requests_finish_within_the_grace_without_interrupt() -> None:
    drain = Drain(grace=5)
    release = asyncio.Event()
    interrupted: list[bool] = []

    async def interrupt() -> None:
        interrupted.append(True)

    async with _client(drain, release) as client:
        running = asyncio.ensure_future(client.get("/v1/models"))
        while drain.in_flight == 0:
            await asyncio.sleep(0.01)
        draining = asyncio.ensure_future(drain_then_interrupt(drain, interrupt))
        await asyncio.sleep(0.05)
        assert (await client.get("/v1/models")).status_code == 503
        release.set()
        assert (await running).status_code == 200
        await draining
    assert not interrupted and drain.in_flight == 0


async def test_requests_still_running_after_the_grace_are_interrupted() -> None:
    drain = Drain(grace=0.1)
    release = asyncio.Event()

    async def interrupt() -> None:
        release.set()  # as stopping the engines ends the streams

    async with _client(drain, release) as client:
        running = asyncio.ensure_future(client.get("/v1/models"))
        while drain.in_flight == 0:
            await asyncio.sleep(0.01)
        await drain_then_interrupt(drain, interrupt)
        assert (await running).status_code == 200
