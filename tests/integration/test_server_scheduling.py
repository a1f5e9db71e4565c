"""Fair admission and queue limits through a real server with the real model."""

from __future__ import annotations

import asyncio
import time

import httpx


def _body(max_tokens: int) -> dict[str, object]:
    return {
        "model": "smollm2:135m",
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 3,
        "ignore_eos": True,
    }


async def _timed_request(client: httpx.AsyncClient, key: str, max_tokens: int) -> float:
    response = await client.post(
        "/v1/chat/completions",
        json=_body(max_tokens),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == max_tokens
    return time.monotonic()


def test_one_client_burst_does_not_starve_another(one_slot_server: str) -> None:
    """Five requests from one key, then one from another: with a single slot, FIFO would
    serve the second key last; fair admission serves it right after the running one
    (or the one after, if the first finished before the second client arrived)."""

    async def main() -> tuple[list[float], float]:
        async with httpx.AsyncClient(base_url=one_slot_server, timeout=120) as client:
            greedy = [
                asyncio.create_task(_timed_request(client, "greedy-key", 48)) for _ in range(5)
            ]
            await asyncio.sleep(0.3)  # the burst is queued before the other client arrives
            polite = await _timed_request(client, "polite-key", 24)
            return list(await asyncio.gather(*greedy)), polite

    greedy_done, polite_done = asyncio.run(main())
    finished_before_polite = sum(t < polite_done for t in greedy_done)
    assert finished_before_polite <= 2, f"{finished_before_polite} greedy requests went first"


def test_full_queue_is_429_with_retry_after(one_slot_server: str) -> None:
    """1 running + 16 waiting fill the server; the next request is refused, not queued."""

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(
            base_url=one_slot_server, timeout=300, limits=limits
        ) as client:
            tasks = [
                asyncio.create_task(client.post("/v1/chat/completions", json=_body(8 if i else 64)))
                for i in range(20)
            ]
            return list(await asyncio.gather(*tasks))

    responses = asyncio.run(main())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 17, codes
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == 3
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] == "queue_full"
