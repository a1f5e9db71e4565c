"""Request limits: 413 over the body size limit, 400 for bodies that are not UTF-8 or nest
too deeply, each in its dialect's error shape; ordinary requests untouched."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from api_v1_harness import v1_app

from ollm.api.http.limits import (
    body_problem,
    json_depth_exceeds,
    lone_surrogate_at,
    non_finite_number,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CHAT = {"model": "fake:1", "messages": [{"role": "user", "content": "hi"}]}
# One POST route per dialect, and how its error message is found.
ROUTES = {
    "/v1/chat/completions": lambda body: body["error"]["message"],
    "/api/chat": lambda body: body["error"],
    "/api/v1/chats": lambda body: body["error"]["message"],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# -- the checks themselves ---------------------------------------------------------------


def test_depth_at_the_limit_passes_and_one_more_fails() -> None:
    assert not json_depth_exceeds(_nested(64), 64)
    assert json_depth_exceeds(_nested(65), 64)
    mixed = b'{"a":' * 40 + b"[" * 30 + b"1" + b"]" * 30 + b"}" * 40
    assert json_depth_exceeds(mixed, 64)
    assert not json_depth_exceeds(mixed, 70)


def test_depth_counts_nesting_not_brackets() -> None:
    wide = json.dumps([[i] for i in range(10_000)]).encode()
    assert not json_depth_exceeds(wide, 4)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"content": "[" * 500 + '\\"{{{' + "]" * 3}).encode()
    assert not json_depth_exceeds(text, 4)


def test_unbalanced_text_is_left_to_the_parser() -> None:
    assert not json_depth_exceeds(b"[" * 200, 64)


@pytest.mark.parametrize(
    ("text", "lone"),
    [
        (r'{"a": "\ud800"}', True),
        (r'{"a": "\uDFFF x"}', True),
        (r'{"a": "\udc00\ud800"}', True),  # low then high: no pair
        (r'{"a": "\ud83d\ude00\ud83d"}', True),  # a pair, then half of another
        (r'{"a": "\\\ud800"}', True),  # an escaped backslash, then a real escape
        (r'{"a": "\ud83d\ude00"}', False),  # an emoji
        (r'{"a": "\\ud800"}', False),  # the text backslash-u-d-8-0-0, not an escape
        (r'{"a": "\u00e9 \u4e2d"}', False),
        ('{"a": "plain"}', False),
    ],
)
def test_lone_surrogate_escapes_are_found_and_pairs_are_not(text: str, lone: bool) -> None:
    assert (lone_surrogate_at(text.encode()) is not None) is lone
    assert json.loads(text) is not None  # Python itself reads every one of them


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"t": NaN}', "NaN"),
        ('{"t": [1, -Infinity]}', "-Infinity"),
        ('{"t": 1e400}', "1e400"),
        ('{"t": -2.5E+999}', "-2.5E+999"),
        ('{"t": 1e308, "u": 1e-400}', None),  # finite; an underflow is just 0
        ('{"NaN": "Infinity", "t": 3e2}', None),  # inside strings they are text
        ('{"t": 12345678901234567890}', None),
    ],
)
def test_non_finite_numbers_are_found_outside_strings(text: str, found: str | None) -> None:
    assert non_finite_number(text.encode()) == found


def test_body_problem_names_surrogates_and_non_finite_numbers() -> None:
    surrogate = body_problem(rb'{"a": "\ud800"}', max_json_depth=8)
    assert surrogate is not None and "surrogate" in surrogate
    infinite = body_problem(b'{"a": Infinity}', max_json_depth=8)
    assert infinite is not None and "not finite" in infinite
    assert body_problem(b'{"a": "ok", "b": 1.5}', max_json_depth=8) is None


def test_body_problem_names_invalid_utf8() -> None:
    problem = body_problem(b'{"a": "\xff"}', max_json_depth=64)
    assert problem is not None and "UTF-8" in problem and "position 7" in problem
    assert body_problem(json.dumps(CHAT).encode(), max_json_depth=64) is None
    assert body_problem('{"a": "é"}'.encode(), max_json_depth=64) is None


# -- through the app ---------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with v1_app(tmp_path, max_body_size=4096) as harness:
        yield harness.client


@pytest.mark.parametrize("path", list(ROUTES))
async def test_body_over_the_limit_is_413_in_the_dialect_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    response = await client.post(path, json=big)
    assert response.status_code == 413
    message = ROUTES[path](response.json())
    assert "4096 bytes" in message
    if not path.startswith("/api/chat"):
        assert response.json()["error"]["code"] == "request_too_large"


async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    response = await client.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413


@pytest.mark.parametrize("path", list(ROUTES))
async def test_invalid_utf8_is_400_in_the_dialect_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    body = json.dumps(CHAT).encode().replace(b"hi", b"h\xc3\x28")
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid UTF-8" in ROUTES[path](response.json())


@pytest.mark.parametrize("path", list(ROUTES))
async def test_deep_json_is_400_in_the_dialect_shape(client: httpx.AsyncClient, path: str) -> None:
    body = json.dumps(CHAT).encode()[:-1] + b', "stop": ' + _nested(100) + b"}"
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "nested more than 64 levels" in ROUTES[path](response.json())


async def test_requests_within_the_limits_are_served(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    assert (await client.get("/v1/models")).status_code == 200
