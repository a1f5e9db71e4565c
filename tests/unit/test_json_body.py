"""JSON bodies labelled as something else (curl -d's form type, litellm's octet-stream,
text/plain, nothing at all) are read as JSON on /api and /v1; bad JSON is still a 400
in the dialect's shape, and uploads keep their type."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgi_helpers import Harness, running_app

from ollm.api.http.json_body import relabels

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

HI = [{"role": "user", "content": "hi"}]
TYPES = [
    "application/x-www-form-urlencoded",
    "application/octet-stream",
    "text/plain",
    "text/plain;charset=UTF-8",
    None,
]
BODIES = {
    "/api/chat": {"model": "fake:1", "messages": HI, "stream": False},
    "/api/generate": {"model": "fake:1", "prompt": "hi", "stream": False},
    "/v1/chat/completions": {"model": "fake:1", "messages": HI},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_app(tmp_path, settings={"preload_default_model": False}) as harness:
        yield harness


def headers_for(content_type: str | None) -> dict[str, str]:
    return {} if content_type is None else {"Content-Type": content_type}


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize("path", list(BODIES))
async def test_json_under_another_type_is_read(h: Harness, path: str, content_type: str) -> None:
    payload = json.dumps(BODIES[path]).encode()
    response = await h.client.post(path, content=payload, headers=headers_for(content_type))
    assert response.status_code == 200, response.text
    body = response.json()
    if path == "/api/chat":
        assert body["message"]["content"] == "Hello from the fake model." and body["done"]
    elif path == "/api/generate":
        assert body["response"] == "Hello from the fake model." and body["done"]
    else:
        assert body["choices"][0]["message"]["content"] == "Hello from the fake model."


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize("path", list(BODIES))
async def test_bad_json_is_a_400_in_the_dialects_shape(
    h: Harness, path: str, content_type: str
) -> None:
    response = await h.client.post(
        path, content=b'{"model": "fake:1", "messages": [', headers=headers_for(content_type)
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    message = error if path.startswith("/api/") else error["message"]
    assert isinstance(message, str) and "not valid JSON" in message


async def test_a_relabelled_body_gets_the_json_checks(h: Harness) -> None:
    deep = b'{"model": "fake:1", "messages": ' + b"[" * 200 + b"]" * 200 + b"}"
    headers = {"Content-Type": "application/octet-stream"}
    response = await h.client.post("/api/chat", content=deep, headers=headers)
    assert response.status_code == 400
    assert "nested" in response.json()["error"]


async def test_multipart_is_not_relabelled(h: Harness) -> None:
    files = {"file": ("a.json", json.dumps(BODIES["/api/chat"]).encode(), "application/json")}
    response = await h.client.post("/api/chat", files=files)
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]


async def test_blobs_keep_their_type(h: Harness) -> None:
    data = b"[" * 500  # deep "JSON" that is a file's bytes: neither parsed nor checked
    digest = hashlib.sha256(data).hexdigest()
    headers = {"Content-Type": "application/octet-stream"}
    response = await h.client.post(f"/api/blobs/sha256:{digest}", content=data, headers=headers)
    assert response.status_code == 201, response.text


def test_which_requests_are_relabelled() -> None:
    assert relabels("/api/chat", "POST", b"application/x-www-form-urlencoded")
    assert relabels("/v1/embeddings", "POST", None)
    assert relabels("/api/delete", "DELETE", b"text/plain")
    assert relabels("/api/v1/chats", "POST", b"Application/Octet-Stream")
    assert not relabels("/api/chat", "GET", b"text/plain")
    assert not relabels("/api/chat", "POST", b"application/json")
    assert not relabels("/api/chat", "POST", b"multipart/form-data; boundary=x")
    assert not relabels("/api/chat", "POST", b"application/vnd.api+json")
    assert not relabels("/api/blobs/sha256:00", "POST", b"application/octet-stream")
    assert not relabels("/health", "POST", None)
    assert not relabels("/login", "POST", b"application/x-www-form-urlencoded")
