"""``/api/version`` answers as a recent Ollama (clients gate features on it); ollm's own
version is the ``X-Ollm-Version`` header of every response and ``/api/v1/system``'s."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_v1_harness import v1_app

from ollm import __version__
from ollm.api.ollama.routes import OLLAMA_COMPAT_VERSION

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_api_version_is_an_ollama_version(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        response = await h.client.get("/api/version")
    assert response.status_code == 200
    assert response.json() == {"version": OLLAMA_COMPAT_VERSION}
    major, minor, patch = (int(part) for part in OLLAMA_COMPAT_VERSION.split("."))
    # Clients test minimums such as >= 0.5 (structured outputs) or >= 0.9 (thinking).
    assert (major, minor) >= (0, 12) and patch >= 0
    assert response.headers["x-ollm-version"] == __version__


async def test_every_response_names_ollm_version(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        answers = [
            await h.client.get("/health"),
            await h.client.get("/v1/models"),
            await h.client.get("/api/tags"),
            await h.client.get("/api/v1/system"),
            await h.client.get("/no/such/route"),  # a 404 carries it too
            await h.client.post("/api/chat", json={"model": "missing:1", "messages": []}),
        ]
        system = answers[3].json()
    assert [a.headers.get("x-ollm-version") for a in answers] == [__version__] * len(answers)
    assert answers[4].status_code == 404 and answers[5].status_code == 404
    assert system["versions"]["ollm"] == __version__


async def test_streamed_reply_carries_the_header(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        body = {"model": "fake:1", "messages": [{"role": "user", "content": "hi"}]}
        response = await h.client.post("/api/chat", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["x-ollm-version"] == __version__
