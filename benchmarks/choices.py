"""``n`` choices benchmark: one request with ``n: 4`` against its same-run baseline, four
separate requests for the same prompt sent at once.

Each trial uses a fresh prompt of ~1,000 tokens (nothing cached), 16 tokens per choice.
Reported: wall time to the last token and the prompt tokens the engine computed (from
``/metrics``: ``ollm_prompt_tokens_total`` less ``ollm_prefix_cache_tokens_total``, the
ones whose KV was reused): the ``n`` choices should compute their prompt once. Medians
over trials; results also written as JSON.

    .venv/bin/python -m benchmarks.choices [--trials 5]
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

CHOICES = 4
MAX_TOKENS = 16
PROMPT_WORDS = 300


def prompt(trial: int, kind: str) -> str:
    """A prompt no earlier request shares a prefix with (its first words differ)."""
    return f"{kind} trial {trial}. " + " ".join(f"item{i}" for i in range(PROMPT_WORDS))


def _total(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def prompt_tokens_computed(client: httpx.AsyncClient) -> float:
    """Prompt tokens so far less those whose KV was reused, summed over models."""
    text = (await client.get("/metrics")).text
    return _total(text, "ollm_prompt_tokens_total") - _total(text, "ollm_prefix_cache_tokens_total")


async def complete(client: httpx.AsyncClient, text: str, n: int) -> int:
    """One non-streamed completion; returns how many choices came back."""
    body = {"model": MODEL, "prompt": text, "max_tokens": MAX_TOKENS, "n": n, "seed": 1}
    response = await client.post("/v1/completions", json=body)
    response.raise_for_status()
    return len(response.json()["choices"])


async def trial(client: httpx.AsyncClient, index: int) -> dict[str, dict[str, float]]:
    out = {}
    for kind in ("n=4 in one request", "4 requests at once"):
        before = await prompt_tokens_computed(client)
        started = time.perf_counter()
        text = prompt(index, kind.split()[0])
        if kind.startswith("n="):
            got = await complete(client, text, CHOICES)
        else:
            got = sum(await asyncio.gather(*(complete(client, text, 1) for _ in range(CHOICES))))
        assert got == CHOICES, got
        out[kind] = {
            "wall_s": time.perf_counter() - started,
            "prompt_tokens": await prompt_tokens_computed(client) - before,
        }
    return out


async def run(base_url: str, trials: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        await complete(client, "warm up", 1)  # load the model
        rows = [await trial(client, i) for i in range(trials)]
    kinds = list(rows[0])
    medians = {
        kind: {key: statistics.median(r[kind][key] for r in rows) for key in rows[0][kind]}
        for kind in kinds
    }
    return {"trials": rows, "medians": medians}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ollm_server(Path(tmp)) as server:
        result = asyncio.run(run(server.base_url, args.trials))
    medians = result["medians"]
    base = medians["4 requests at once"]
    print(
        f"{CHOICES} choices of {MAX_TOKENS} tokens, ~1,000-token prompt, medians of {args.trials}"
    )
    print(f"{'':22s} {'wall s':>8} {'ratio':>6} {'prompt tokens':>14}")
    for kind, row in medians.items():
        ratio = row["wall_s"] / base["wall_s"]
        print(f"{kind:22s} {row['wall_s']:8.2f} {ratio:6.2f} {row['prompt_tokens']:14.0f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "choices.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
