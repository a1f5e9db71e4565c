"""A server with one KV pool (``OLLM_KV_POOL_CELLS``), through its HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import run_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def pool_server(ollm_home: Path) -> Iterator[str]:
    env = {"OLLM_KV_POOL_CELLS": "8192", "OLLM_MAX_RUNNING": "8", "OLLM_THREADS": "2"}
    with run_server(ollm_home, ollm_home.parent / "pool-server.log", **env) as base_url:
        yield base_url


def _server_rss(base_url: str) -> int:
    port = base_url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        try:
            if "serve" in child.cmdline() and port in child.cmdline():
                return child.memory_info().rss
        except psutil.Error:
            continue
    raise AssertionError("no server process")


def test_a_long_prompt_is_served_beside_short_streams(pool_server: str) -> None:
    words = " ".join(f"item{i}" for i in range(1300))  # about 5,000 tokens
    long_body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"A list: {words}. Which came first?"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    short_body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something about rivers."}],
        "max_tokens": 32,
        "temperature": 0,
    }

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=pool_server, timeout=240) as client:
            calls = [client.post("/v1/chat/completions", json=long_body)]
            calls += [client.post("/v1/chat/completions", json=short_body) for _ in range(6)]
            return list(await asyncio.gather(*calls))

    responses = asyncio.run(main())
    for response in responses:
        assert response.status_code == 200, response.text
    assert responses[0].json()["usage"]["prompt_tokens"] > 4096
    [model] = httpx.get(f"{pool_server}/api/ps", timeout=30).json()["models"]
    assert model["context_length"] == 8192  # the trained context, not a 4,096 slot
    # Its memory is the pool's (8,192 cells), not 8 slots' worth of 4,096.
    rss = _server_rss(pool_server)
    print(f"pool server RSS after the requests: {rss / 2**20:.0f} MiB")
    assert model["size"] < 600 * 2**20
