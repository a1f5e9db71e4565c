"""Disconnect storm: 50 clients open streams and leave mid-stream (or while still queued).

Within seconds the engine has no running or waiting sequence left (``/metrics``), and the
next request is served normally.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from conftest import MODEL, metric_total, report

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENTS = 50
FREED_WITHIN = 20.0  # seconds: generous on a shared 2-core box; measured and reported


def _long_stream(i: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell a long story, number {i}."}],
        "max_tokens": 400,
        "ignore_eos": True,
        "stream": True,
    }


async def _open_and_drop(client: httpx.AsyncClient, i: int, drop: asyncio.Event) -> str:
    """Open a stream, read until its first chunk or the drop signal, then hang up."""
    async with client.stream("POST", "/v1/chat/completions", json=_long_stream(i)) as response:
        if response.status_code != 200:
            return f"refused {response.status_code}"
        lines = response.aiter_lines()
        first = asyncio.ensure_future(anext(lines))
        dropped = asyncio.ensure_future(drop.wait())
        await asyncio.wait({first, dropped}, return_when=asyncio.FIRST_COMPLETED)
        streamed = first.done()
        first.cancel()
        dropped.cancel()
        return "mid-stream" if streamed else "queued"
    # leaving the block closes the connection with the body unread: the client is gone


async def _storm(base_url: str) -> list[str]:
    limits = httpx.Limits(max_connections=CLIENTS + 10)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        drop = asyncio.Event()
        tasks = [asyncio.ensure_future(_open_and_drop(client, i, drop)) for i in range(CLIENTS)]
        await asyncio.sleep(5)  # the first sequences are decoding by now
        drop.set()
        return list(await asyncio.gather(*tasks))


def test_fifty_clients_leave_and_every_sequence_is_freed(storm_server: str) -> None:
    results = asyncio.run(_storm(storm_server))
    left = time.monotonic()
    busy = None
    while time.monotonic() - left < FREED_WITHIN:
        running = metric_total(storm_server, "ollm_running_sequences")
        waiting = metric_total(storm_server, "ollm_queue_depth")
        busy = running + waiting
        if busy == 0:
            break
        time.sleep(0.25)
    freed_after = time.monotonic() - left

    started = time.monotonic()
    follow_up = httpx.post(
        f"{storm_server}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        timeout=60,
    )
    report(
        "disconnect-storm",
        {
            "clients": CLIENTS,
            "mid_stream": results.count("mid-stream"),
            "queued": results.count("queued"),
            "refused": sum(r.startswith("refused") for r in results),
            "freed_after_s": f"{freed_after:.2f}",
            "next_request_s": f"{time.monotonic() - started:.2f}",
        },
    )
    assert busy == 0, f"{busy} sequences still running or waiting {FREED_WITHIN} s after"
    assert results.count("mid-stream") >= 1
    assert follow_up.status_code == 200, follow_up.text
    assert follow_up.json()["choices"][0]["message"]["content"]
