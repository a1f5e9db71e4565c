"""The serving benchmark's report: ratios, targets, the printed table and the JSON file."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.config import BASELINE_DIST, QUIET_CORES, RESULTS_DIR, Config
from benchmarks.stats import median_summary, stream_decode_tps, summarize_run
from benchmarks.workload import StreamRecord, run_key


def fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    """Format a number (scaled) or a dash."""
    return "-" if value is None else f"{value * scale:.{digits}f}"


def print_table(
    ollm: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]], ratios: dict[int, Any]
) -> None:
    """The per-N comparison table (medians over repeats; times in ms)."""
    header = (
        f"{'N':>3} | {'ollm tok/s':>10} {'base tok/s':>10} {'ratio':>6} | "
        f"{'ollm TTFT p50/p95':>18} {'base TTFT p50/p95':>18} {'p50 ratio':>9} | "
        f"{'ollm ITL p50/p95':>17}"
    )
    print(header)
    print("-" * len(header))
    for n in sorted(set(ollm) | set(base)):
        o, b, r = ollm.get(n, {}), base.get(n, {}), ratios.get(n, {})
        o_ttft = f"{fmt(o.get('ttft_p50_s'), 1000, 0)}/{fmt(o.get('ttft_p95_s'), 1000, 0)}"
        b_ttft = f"{fmt(b.get('ttft_p50_s'), 1000, 0)}/{fmt(b.get('ttft_p95_s'), 1000, 0)}"
        itl = f"{fmt(o.get('itl_p50_s'), 1000)}/{fmt(o.get('itl_p95_s'), 1000)}"
        print(
            f"{n:>3} | {fmt(o.get('agg_tps')):>10} {fmt(b.get('agg_tps')):>10} "
            f"{fmt(r.get('agg_tps_ratio'), digits=2):>6} | {o_ttft:>18} {b_ttft:>18} "
            f"{fmt(r.get('ttft_p50_ratio'), digits=2):>9} | {itl:>17}"
        )


def print_report(result: dict[str, Any]) -> None:
    """Table, single-stream line, chunked-prefill line, targets, problems."""
    ollm = {int(n): v for n, v in result["ollm"]["summary"].items()}
    base = {int(n): v for n, v in result["baseline"]["summary"].items()}
    ratios = {int(n): v for n, v in result["ratios"].items()}
    print()
    print_table(ollm, base, ratios)
    one_o, one_b = ollm.get(1, {}), base.get(1, {})
    print(
        f"\nsingle-stream decode: ollm {fmt(one_o.get('stream_decode_tps_p50'))} tok/s, "
        f"baseline {fmt(one_b.get('stream_decode_tps_p50'))} tok/s, "
        f"ratio {fmt((ratios.get(1) or {}).get('decode_tps_ratio'), digits=2)}"
    )
    probe = result.get("prefill_probe")
    if probe:
        print(
            f"chunked prefill: {probe['long_prompt_tokens']}-token prompt, TTFT "
            f"{fmt(probe['long_ttft_s'], 1000, 0)} ms (baseline alone: "
            f"{fmt(probe['baseline_long_ttft_s'], 1000, 0)} ms); running stream ITL during prefill "
            f"p50/p95/max {fmt(probe['itl_p50_s'], 1000)}/{fmt(probe['itl_p95_s'], 1000)}/"
            f"{fmt(probe['itl_max_s'], 1000)} ms over {probe['window_gaps']} gaps "
            f"(before: p50 {fmt(probe['itl_p50_before_s'], 1000)} ms)"
            + ("" if probe["window_covered"] else "  [stream ended before the window closed]")
        )
    print("\ntargets:")
    for description, value, verdict in result["targets"]:
        print(f"  {verdict:<4}  {description}  (measured {fmt(value, digits=2)})")
    noisy = {
        label: ctx["foreign_cores_during"]
        for label, ctx in result["run_context"].items()
        if ctx["foreign_cores_during"] > QUIET_CORES
    }
    if noisy:
        print(f"\nnoisy runs (cores used by other processes meanwhile): {noisy}")
    if result["problems"]:
        print(f"\nproblems ({len(result['problems'])}):")
        for problem in result["problems"][:30]:
            print(f"  - {problem}")


def records_json(
    records: dict[str, list[StreamRecord]], serial: bool
) -> dict[str, list[dict[str, Any]]]:
    """Per-request facts relative to the run start, small enough to keep in the JSON."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, recs in records.items():
        start = min(r.send for r in recs)
        out[key] = [
            {
                "request_id": r.request_id,
                "send_s": r.send - start,
                "ttft_s": (r.chunks[0] - (start if serial else r.send)) if r.chunks else None,
                "finish_s": (r.finish - start) if r.finish is not None else None,
                "completion_tokens": r.completion_tokens,
                "prompt_tokens": r.prompt_tokens,
                "content_chunks": len(r.chunks),
                "finish_reason": r.finish_reason,
                "decode_tps": stream_decode_tps(r),
                "error": r.error,
            }
            for r in recs
        ]
    return out


def summaries_by_n(
    records: dict[str, list[StreamRecord]], config: Config, serial: bool
) -> dict[int, dict[str, Any]]:
    """Median-over-repeats summary per N."""
    out: dict[int, dict[str, Any]] = {}
    for n in config.concurrency:
        runs = []
        for repeat in range(config.repeats):
            recs = records.get(run_key(n, repeat))
            if not recs:
                continue
            arrivals = [min(r.send for r in recs)] * len(recs) if serial else [r.send for r in recs]
            runs.append(summarize_run(recs, arrivals))
        if runs:
            out[n] = {**median_summary(runs), "repeats": len(runs)}
    return out


def environment() -> dict[str, Any]:
    """Machine and version facts that make a result comparable."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    versions = {}
    for dist in ("llama-cpp-python", "ollm", BASELINE_DIST):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return {
        "git_commit": commit or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
    }


def write_results(result: dict[str, Any]) -> Path:
    """Write the JSON result file and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"serving-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path
