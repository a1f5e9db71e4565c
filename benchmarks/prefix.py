"""Prefix-cache benchmark: time to first token of one more chat turn, cold vs warm vs
reopened after a restart.

A chat with ~2,000 tokens of history, then one more turn. "Cold" asks as a caller whose
cache holds nothing (a fresh API key: the cache is never shared across callers), "warm"
as the caller who built the history (its KV slot still holds it), "reopened" as that
caller again after the server was stopped and started on the same data (the KV comes
from the snapshot saved at shutdown). Then 8 callers each continue their own shorter chat
at once: cold, warm, and reopened. Medians over repeats; results also written as JSON.

    .venv/bin/python -m benchmarks.prefix [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.config import DEFAULT_MODEL as MODEL
from benchmarks.config import RESULTS_DIR as RESULTS
from benchmarks.servers import ollm_server
from benchmarks.workload import build_prompt


async def ask(
    client: httpx.AsyncClient, key: str, messages: list[dict[str, str]], max_tokens: int
) -> dict[str, Any]:
    """One streamed chat turn; returns its text, TTFT and cached prompt tokens."""
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started, ttft, text, usage = time.monotonic(), None, [], {}
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    ttft = ttft if ttft is not None else time.monotonic() - started
                    text.append(content)
    cached = usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    return {
        "ttft": ttft,
        "text": "".join(text),
        "prompt": usage.get("prompt_tokens"),
        "cached": cached,
    }


def history(seed: int, tokens: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": build_prompt(seed, seed, tokens)}]


async def follow_up(client: httpx.AsyncClient, key: str, seed: int, tokens: int) -> list[dict]:
    """Build a chat as ``key`` (first turn answered), return the messages of the next turn."""
    messages = history(seed, tokens)
    first = await ask(client, key, messages, max_tokens=32)
    return [
        *messages,
        {"role": "assistant", "content": first["text"]},
        {"role": "user", "content": "Summarise that in one sentence."},
    ]


async def single(
    client: httpx.AsyncClient, repeats: int
) -> tuple[dict[str, Any], list[list[dict[str, str]]]]:
    """Cold vs warm; also returns each repeat's follow-up, to ask again after a restart."""
    cold, warm, cached, chats = [], [], [], []
    for repeat in range(repeats):
        messages = await follow_up(client, f"owner-{repeat}", 1000 + repeat, 2000)
        chats.append(messages)
        cold_turn = await ask(client, f"stranger-{repeat}", messages, max_tokens=8)
        warm_turn = await ask(client, f"owner-{repeat}", messages, max_tokens=8)
        cold.append(cold_turn["ttft"])
        warm.append(warm_turn["ttft"])
        cached.append(warm_turn["cached"])
        print(
            f"  repeat {repeat}: prompt {warm_turn['prompt']} tokens, cached {warm_turn['cached']};"
            f" TTFT cold {cold_turn['ttft'] * 1000:.0f} ms, warm {warm_turn['ttft'] * 1000:.0f} ms"
        )
    return {
        "cold_ttft_s": statistics.median(cold),
        "warm_ttft_s": statistics.median(warm),
        "ratio": statistics.median(warm) / statistics.median(cold),
        "cached_tokens": statistics.median(cached),
    }, chats


async def reopened_single(
    client: httpx.AsyncClient, chats: list[list[dict[str, str]]], cold_s: float
) -> dict[str, Any]:
    """After a restart: each owner asks its follow-up again (KV from disk)."""
    ttfts, cached = [], []
    for repeat, messages in enumerate(chats):
        turn = await ask(client, f"owner-{repeat}", messages, max_tokens=8)
        ttfts.append(turn["ttft"])
        cached.append(turn["cached"])
        print(
            f"  repeat {repeat}: prompt {turn['prompt']} tokens, cached {turn['cached']};"
            f" TTFT reopened {turn['ttft'] * 1000:.0f} ms"
        )
    return {
        "reopened_ttft_s": statistics.median(ttfts),
        "ratio": statistics.median(ttfts) / cold_s,
        "cached_tokens": statistics.median(cached),
    }


async def wave(
    client: httpx.AsyncClient, prefix: str, chats: list[list[dict[str, str]]]
) -> tuple[list[float], int]:
    """All 8 callers at once; their TTFTs and the prompt tokens served from cache."""
    results = await asyncio.gather(
        *(ask(client, f"{prefix}{i}", chats[i], max_tokens=8) for i in range(len(chats)))
    )
    return [r["ttft"] for r in results], sum(r["cached"] for r in results)


async def eight_users(
    client: httpx.AsyncClient, tokens: int
) -> tuple[dict[str, Any], list[list[dict[str, str]]]]:
    chats = [await follow_up(client, f"user-{i}", 2000 + i, tokens) for i in range(8)]
    cold, cold_cached = await wave(client, "stranger-user-", chats)
    warm, warm_cached = await wave(client, "user-", chats)
    print(f"  cached prompt tokens: cold wave {cold_cached}, warm wave {warm_cached}")
    return {
        "history_tokens": tokens,
        "cold_cached_tokens": cold_cached,
        "warm_cached_tokens": warm_cached,
        "cold_ttft_p50_s": statistics.median(cold),
        "warm_ttft_p50_s": statistics.median(warm),
        "cold_ttft_max_s": max(cold),
        "warm_ttft_max_s": max(warm),
    }, chats


async def main(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with ollm_server(workdir) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
                print("one chat, ~2,000 tokens of history, one more turn:")
                one, chats = await single(client, repeats)
                print("8 users, each continuing its own ~500-token chat at once:")
                many, user_chats = await eight_users(client, 500)
        print("restarting the server on the same data (snapshots saved at shutdown):")
        print(f"  {len(list((workdir / 'home' / 'kv').glob('*.kv')))} KV snapshots on disk")
        with ollm_server(workdir) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=600) as client:
                await ask(client, "warm-up", [{"role": "user", "content": "Hi"}], max_tokens=2)
                again = await reopened_single(client, chats, one["cold_ttft_s"])
                reopened, reopened_cached = await wave(client, "user-", user_chats)
                print(f"  8 users reopened: cached prompt tokens {reopened_cached}")
    many["reopened_ttft_p50_s"] = statistics.median(reopened)
    many["reopened_ttft_max_s"] = max(reopened)
    many["reopened_cached_tokens"] = reopened_cached
    print()
    header = (
        f"{'':28} {'cold':>10} {'warm':>10} {'reopened':>10} {'warm/cold':>10} {'reop/cold':>10}"
    )
    print(header)
    rows = [
        ("1 chat, TTFT (median)", one["cold_ttft_s"], one["warm_ttft_s"], again["reopened_ttft_s"]),
        (
            "8 users, TTFT p50",
            many["cold_ttft_p50_s"],
            many["warm_ttft_p50_s"],
            many["reopened_ttft_p50_s"],
        ),
        (
            "8 users, TTFT max",
            many["cold_ttft_max_s"],
            many["warm_ttft_max_s"],
            many["reopened_ttft_max_s"],
        ),
    ]
    for label, cold, warm, reopen in rows:
        print(
            f"{label:28} {cold * 1000:>8.0f}ms {warm * 1000:>8.0f}ms {reopen * 1000:>8.0f}ms "
            f"{warm / cold:>10.3f} {reopen / cold:>10.3f}"
        )
    verdict = "PASS" if one["ratio"] <= 0.10 else "MISS"
    print(f"  {verdict}  warm <= 0.10 x cold  (measured {one['ratio']:.3f})")
    verdict = "PASS" if again["ratio"] <= 0.25 else "MISS"
    print(f"  {verdict}  reopened after restart <= 0.25 x cold  (measured {again['ratio']:.3f})")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"prefix-{time.strftime('%Y%m%d-%H%M%S')}.json"
    results = {"single": one, "reopened": again, "eight_users": many}
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(parser.parse_args().repeats))
