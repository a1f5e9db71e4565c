"""Helpers for the ``/api/v1`` tests against a real server: a database per dialect, SSE
reading, and the list of chat and message routes that must hide other people's data."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHAT_MODEL = "smollm2:135m"
PASSWORD = "correct horse battery"
DIALECTS = ["sqlite", "postgresql"]
SERVER_ENV = {"OLLM_MAX_RUNNING": "4", "OLLM_CONTEXT_PER_SEQUENCE": "2048", "OLLM_THREADS": "2"}


def database_url(kind: str, request: pytest.FixtureRequest, directory: Path) -> str:
    """A fresh, empty database: a SQLite file in ``directory``, or a new database on the
    throwaway PostgreSQL server (started on first use, for the whole run)."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{directory / 'ollm.db'}"
    server = request.getfixturevalue("postgres_server")
    return asyncio.run(server.create_database())


def events(response: httpx.Response) -> Iterator[Any]:
    """The SSE payloads of a streamed response as they arrive (``"[DONE]"`` as a string)."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            yield data if data == "[DONE]" else json.loads(data)


def post_events(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    """POST, read the whole event stream, check it ends properly, return the events."""
    with client.stream("POST", url, json=body) as response:
        assert response.status_code == 200, response.read().decode()
        received = list(events(response))
    assert received[-1] == "[DONE]", received[-3:]
    assert received[-2]["type"] == "done", received[-2]
    return received


def new_chat(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/chats", json={"model": CHAT_MODEL, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def ask(client: httpx.Client, chat_id: str, content: str) -> dict[str, Any]:
    """One turn, not streamed: the reply's result (usage, timings, saved message)."""
    response = client.post(
        f"/api/v1/chats/{chat_id}/messages", json={"content": content, "stream": False}
    )
    assert response.status_code == 200, response.text
    return response.json()
