"""Numbers from stream records: percentiles, per-run summaries, sanity checks."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.workload import StreamRecord


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (linear interpolation), or None for no data."""
    return float(np.percentile(values, q)) if values else None


def median_of(values: Sequence[float | None]) -> float | None:
    """Median over repeats, skipping runs that produced no value."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def chunk_gaps(record: StreamRecord) -> list[float]:
    """Seconds between consecutive content chunks of one stream."""
    return [b - a for a, b in itertools.pairwise(record.chunks)]


def stream_decode_tps(record: StreamRecord) -> float | None:
    """Decode speed of one stream: (tokens - 1) / (last chunk - first chunk)."""
    tokens = record.completion_tokens or 0
    if tokens < 2 or len(record.chunks) < 2 or record.chunks[-1] <= record.chunks[0]:
        return None
    return (tokens - 1) / (record.chunks[-1] - record.chunks[0])


def summarize_run(records: Sequence[StreamRecord], arrivals: Sequence[float]) -> dict[str, Any]:
    """Aggregate tok/s, TTFT and ITL of one run; ``arrivals[i]`` is when request i arrived.

    ollm's arrival is each request's own send time; the serial baseline's is the first
    send for every request, so its TTFT includes the wait behind earlier requests.
    """
    start = min(arrivals)
    finishes = [r.finish for r in records if r.finish is not None]
    wall = (max(finishes) - start) if finishes else None
    tokens = sum(r.completion_tokens or 0 for r in records)
    ttfts = [r.chunks[0] - a for r, a in zip(records, arrivals, strict=True) if r.chunks]
    gaps = [gap for r in records for gap in chunk_gaps(r)]
    decode = [v for v in map(stream_decode_tps, records) if v is not None]
    return {
        "requests": len(records),
        "completion_tokens": tokens,
        "content_chunks": sum(len(r.chunks) for r in records),
        "wall_s": wall,
        "agg_tps": tokens / wall if wall else None,
        "ttft_p50_s": percentile(ttfts, 50),
        "ttft_p95_s": percentile(ttfts, 95),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p95_s": percentile(gaps, 95),
        "stream_decode_tps_p50": percentile(decode, 50),
    }


def median_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric median over the repeats of one N."""
    keys = [k for k, v in runs[0].items() if isinstance(v, float | int) or v is None]
    return {key: median_of([run[key] for run in runs]) for key in keys}


def check_records(records: Sequence[StreamRecord], expected_tokens: int, label: str) -> list[str]:
    """Human-readable problems: errors, missing [DONE], wrong token counts."""
    problems = []
    for r in records:
        where = f"{label} {r.request_id}"
        if r.error:
            problems.append(f"{where}: {r.error}")
        elif r.completion_tokens != expected_tokens:
            problems.append(
                f"{where}: {r.completion_tokens} completion tokens, expected {expected_tokens}"
            )
        if not r.error and not r.chunks:
            problems.append(f"{where}: no content chunk")
    return problems


def summarize_probe(stream: StreamRecord, long: StreamRecord) -> dict[str, Any]:
    """ITL of the running stream while the long prompt was being prefilled."""
    window_end = long.chunks[0] if long.chunks else long.finish or long.send
    chunks = stream.chunks
    window = [b - a for a, b in itertools.pairwise(chunks) if b > long.send and a < window_end]
    before = [b - a for a, b in itertools.pairwise(chunks) if b <= long.send]
    return {
        "long_prompt_tokens": long.prompt_tokens,
        "long_ttft_s": (long.chunks[0] - long.send) if long.chunks else None,
        "stream_chunks_before_long_send": sum(1 for t in chunks if t <= long.send),
        "window_s": window_end - long.send,
        "window_gaps": len(window),
        "window_covered": bool(chunks) and chunks[-1] >= window_end,
        "itl_p50_s": percentile(window, 50),
        "itl_p95_s": percentile(window, 95),
        "itl_max_s": max(window) if window else None,
        "itl_p50_before_s": percentile(before, 50),
    }
