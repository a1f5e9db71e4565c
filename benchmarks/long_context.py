"""Long-context benchmark: one ~16,000-token prompt served from the KV pool while eight
short streams decode beside it.

The model is the bundled ``gemma3:270m`` (a base model trained on 32k tokens, so it goes
through ``/v1/completions``). The server gets a KV pool of 24,576 cells: room for the long
prompt and the eight streams. Eight streaming completions start first (~200-token
prompts, 192 tokens each, ``ignore_eos``); once every one of them is decoding, the long
prompt arrives. The benchmark reports whether anything errored, the short streams'
inter-token latency while the long prompt prefilled (chunked, so they keep decoding), and
the long prompt's time to first token. There is no baseline engine here: the target is
absolute (ITL p95 < 300 ms), as the issue states it.

    .venv/bin/python -m benchmarks.long_context
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from benchmarks.loadgen import stream_sse
from benchmarks.servers import ollm_server
from benchmarks.stats import percentile
from benchmarks.workload import StreamRecord, build_prompt

MODEL = "gemma3:270m"
POOL_CELLS = 24_576
LONG_PROMPT_TOKENS = 16_000
SHORT_STREAMS = 8
SHORT_TOKENS = 192
TARGET_ITL_P95_S = 0.300


async def stream_completion(
    client: httpx.AsyncClient,
    request_id: str,
    prompt: str,
    max_tokens: int,
    started: asyncio.Event | None = None,
) -> StreamRecord:
    """One streaming ``/v1/completions`` request, timed chunk by chunk."""
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    return await stream_sse(client, "/v1/completions", body, request_id, started)


async def run(base_url: str) -> dict[str, Any]:
    timeout = httpx.Timeout(900.0, connect=10.0)
    limits = httpx.Limits(max_connections=SHORT_STREAMS + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:
        await stream_completion(client, "warm-up", "Hello", 4)  # load the model first
        events = [asyncio.Event() for _ in range(SHORT_STREAMS)]
        shorts = [
            asyncio.create_task(
                stream_completion(
                    client, f"short-{i}", build_prompt(i, i, 200), SHORT_TOKENS, events[i]
                )
            )
            for i in range(SHORT_STREAMS)
        ]
        await asyncio.gather(*(event.wait() for event in events))
        long = await stream_completion(client, "long", build_prompt(99, 1, LONG_PROMPT_TOKENS), 16)
        short_records = await asyncio.gather(*shorts)
    window_end = long.chunks[0] if long.chunks else long.finish or long.send
    gaps = [
        b - a
        for record in short_records
        for a, b in itertools.pairwise(record.chunks)
        if b > long.send and a < window_end
    ]
    errors = [r.error for r in (*short_records, long) if r.error]
    return {
        "long_prompt_tokens": long.prompt_tokens,
        "long_ttft_s": (long.chunks[0] - long.send) if long.chunks else None,
        "long_finish": long.finish_reason,
        "short_tokens": [r.completion_tokens for r in short_records],
        "window_gaps": len(gaps),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p95_s": percentile(gaps, 95),
        "itl_max_s": max(gaps) if gaps else None,
        "errors": errors,
    }


def main() -> int:
    os.environ["OLLM_KV_POOL_CELLS"] = str(POOL_CELLS)  # the server inherits it
    with tempfile.TemporaryDirectory(prefix="ollm-long-") as tmp, ollm_server(Path(tmp)) as server:
        result = asyncio.run(run(server.base_url))

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f}"

    print(f"\nlong-context benchmark ({MODEL}, KV pool {POOL_CELLS} cells)")
    long_ttft = ms(result["long_ttft_s"])
    print(f"  long prompt: {result['long_prompt_tokens']} tokens, TTFT {long_ttft} ms,"
          f" finish {result['long_finish']}")  # fmt: skip
    print(f"  {SHORT_STREAMS} short streams: tokens {result['short_tokens']}")
    print(f"  their ITL while it prefilled ({result['window_gaps']} gaps): p50 "
          f"{ms(result['itl_p50_s'])} ms, p95 {ms(result['itl_p95_s'])} ms,"
          f" max {ms(result['itl_max_s'])} ms")  # fmt: skip
    p95 = result["itl_p95_s"]
    verdicts = [
        ("nothing errored", not result["errors"]),
        ("every short stream got all its tokens", result["short_tokens"] == [SHORT_TOKENS] * 8),
        ("the long prompt was answered", result["long_finish"] in ("length", "stop")),
        (f"short-stream ITL p95 < {TARGET_ITL_P95_S * 1000:.0f} ms",
         p95 is not None and p95 < TARGET_ITL_P95_S),
    ]  # fmt: skip
    for name, ok in verdicts:
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    for error in result["errors"]:
        print(f"  error: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
