"""A reply cut inside a multi-byte character (the token limit splits an emoji) ends with the
characters before it, never with U+FFFD, in every dialect. The fake model's tokens are
single bytes, so ``max_tokens`` can cut anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asgi_helpers import running_app

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPLY = "Nice 👍 work"
CUT = 7  # "Nice " and two of the emoji's four bytes


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_openai_whole_and_streamed(tmp_path: Path) -> None:
    body = {"model": "fake:1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": CUT}
    async with running_app(tmp_path, reply=lambda _p: REPLY) as h:
        whole = (await h.client.post("/v1/chat/completions", json=body)).json()
        streamed = await h.client.post("/v1/chat/completions", json={**body, "stream": True})
    assert whole["choices"][0]["message"]["content"] == "Nice "
    assert whole["choices"][0]["finish_reason"] == "length"
    deltas = [
        json.loads(line[6:])["choices"]
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    text = "".join(c[0]["delta"].get("content", "") for c in deltas if c)
    assert text == "Nice " and "\ufffd" not in streamed.text


async def test_ollama_generate(tmp_path: Path) -> None:
    body = {"model": "fake:1", "prompt": "hi", "stream": False, "options": {"num_predict": CUT}}
    async with running_app(tmp_path, reply=lambda _p: REPLY) as h:
        answer = (await h.client.post("/api/generate", json=body)).json()
    assert answer["response"] == "Nice " and answer["done_reason"] == "length"
