"""Hostile and careless input against a real server: every case is a 4xx with a message a
person can act on, in the dialect's error shape, and the server keeps serving.

Ollama's dialect ignores unknown fields and clamps generation to the context, as Ollama
itself does (its clients send fields newer than this server): those cases are checked to
end normally instead.
"""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import MODEL

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HI = [{"role": "user", "content": "Hi"}]
CHAT = {"model": MODEL, "messages": HI, "max_tokens": 2}
OLLAMA = {"model": MODEL, "messages": HI, "stream": False, "options": {"num_predict": 2}}
DIALECTS = {  # path, a valid body, how to read an error's message
    "openai": ("/v1/chat/completions", CHAT, lambda body: body["error"]["message"]),
    "ollama": ("/api/chat", OLLAMA, lambda body: body["error"]),
    "ollm": ("/api/v1/chats", {"title": "t"}, lambda body: body["error"]["message"]),
}


def _post(base_url: str, path: str, content: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return httpx.post(f"{base_url}{path}", content=content, headers=headers, timeout=60)


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_malformed_bodies_are_4xx_in_each_dialect(load_server: str, dialect: str) -> None:
    path, valid, message_of = DIALECTS[dialect]
    text = json.dumps(valid).encode()
    cases = {
        "too large": (413, json.dumps({**valid, "pad": "x" * 100_000}).encode(), "limit"),
        "deep": (400, text[:-1] + b', "deep": ' + b"[" * 200 + b"]" * 200 + b"}", "nested"),
        "invalid utf-8": (400, text[:-1] + b', "x": "\xff\xfe"}', "UTF-8"),
        "not json": (400, b"{model: 1", "JSON"),
        "not an object": (400, b"[1, 2, 3]", ""),
    }
    if dialect != "ollm":  # POST /api/v1/chats takes no body at all: a new empty chat
        cases["empty"] = (400, b"", "")
    for name, (status, body, words) in cases.items():
        response = _post(load_server, path, body)
        assert response.status_code == status, (name, response.status_code, response.text)
        message = message_of(response.json())
        assert isinstance(message, str) and message and words in message, (name, message)
    assert _post(load_server, path, text).status_code in (200, 201)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": 10**12}, None),  # more than the context: 400 context_length_exceeded
        ({"n": 10**6}, "n"),
        ({"n": 9}, "n"),  # above the 8 choices one request may ask for
        ({"max_tokens": -5}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 7}, "top_p"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"messages": "Hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "Hi"}]}, None),
        ({"model": 42}, "model"),
        ({"stop": [[["nested"]]]}, "stop"),
    ],
)
def test_openai_bad_values_are_400_naming_the_field(
    load_server: str, change: dict[str, object], param: str | None
) -> None:
    response = httpx.post(f"{load_server}/v1/chat/completions", json={**CHAT, **change}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize(
    "change",
    [
        {"options": {"num_predict": -5}},
        {"options": {"temperature": -1}},
        {"options": {"top_k": "many"}},
        {"messages": "Hi"},
        {"model": ["a"]},
        {"format": {"type": "object", "properties": 5}},
    ],
)
def test_ollama_bad_values_are_400(load_server: str, change: dict[str, object]) -> None:
    response = httpx.post(f"{load_server}/api/chat", json={**OLLAMA, **change}, timeout=60)
    assert response.status_code == 400, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]


def test_ollama_tolerates_what_ollama_tolerates(load_server: str) -> None:
    """Unknown fields are ignored and a huge num_predict stops at the context, as in Ollama."""
    lenient = {**OLLAMA, "future_field": 1, "options": {"num_predict": 10**12, "x": 1}}
    response = httpx.post(f"{load_server}/api/chat", json=lenient, timeout=90)
    assert response.status_code == 200, response.text
    assert response.json()["done"] is True


@pytest.mark.parametrize(
    "body",
    [{"title": 5}, {"unknown": 1}, {"title": "x" * 10_000}, {"model": {"a": 1}}],
)
def test_ollm_api_bad_values_are_400(load_server: str, body: dict[str, object]) -> None:
    response = httpx.post(f"{load_server}/api/v1/chats", json=body, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


def test_huge_query_numbers_are_400(load_server: str) -> None:
    """A huge ``offset`` once overflowed SQLite's INTEGER into a 500 (found by the fuzz)."""
    response = httpx.get(f"{load_server}/api/v1/chats", params={"offset": 10**20}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "offset"
