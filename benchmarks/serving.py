"""Serving benchmark: ollm's continuous batching against llama-cpp-python, same run.

``make bench`` runs this module (``python -m benchmarks.serving``). It starts ``ollm serve``
on a free loopback port with a throw-away ``OLLM_HOME``, fires N concurrent streaming chat
requests (N = 1, 4, 8, 16) at ``/v1/chat/completions`` and measures aggregate output
tok/s, time to first token (TTFT) and inter-token latency (ITL). The baseline is
llama-cpp-python's high-level ``Llama`` running the *same* requests one after another in a
separate process while the server is idle; its numbers are computed as if all N requests
arrived at once and were served serially, which is what llama-cpp-python's own server does
behind its single lock.
A chunked-prefill probe then checks that a long prompt does not stall a running stream.

Every request produces exactly ``max_tokens`` tokens: ollm gets ``ignore_eos``, the
baseline gets the end-of-generation tokens masked to -inf by a logits processor.
Sampling is plain temperature sampling on both sides (top_p 1, no top_k, no min_p).

Results go to ``benchmarks/results/serving-<timestamp>.json``; the exit code is 0 even
when a target is missed, because benchmarks report and tests gate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.baseline import baseline_gguf, run_baseline
from benchmarks.config import (
    BASELINE_DIST,
    DEFAULT_MODEL,
    PREFILL_PROBE_LONG_MAX_TOKENS,
    PREFILL_PROBE_STREAM_TOKENS,
    TARGET_AGG_RATIO_N8,
    TARGET_DECODE_RATIO,
    TARGET_PREFILL_ITL_P95_MS,
    TARGET_TTFT_RATIO_N8,
    Config,
)
from benchmarks.loadgen import prefill_probe, run_concurrent
from benchmarks.report import (
    environment,
    fmt,
    print_report,
    records_json,
    summaries_by_n,
    write_results,
)
from benchmarks.servers import LoadMeter, Server, cpu_seconds, log_tail, ollm_server, wait_for_quiet
from benchmarks.stats import check_records, summarize_probe, summarize_run
from benchmarks.workload import StreamRecord, make_request, make_run, probe_specs, run_key


@dataclass(slots=True)
class Collected:
    """Raw records and per-run context, filled run by run."""

    ollm: dict[str, list[StreamRecord]] = field(default_factory=dict)
    baseline: dict[str, list[StreamRecord]] = field(default_factory=dict)
    context: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def measured(
    server: Server | None, settle_timeout_s: float, work: Callable[[], Any]
) -> tuple[Any, dict[str, Any]]:
    """Wait for a quiet machine, run ``work()``, and return its result with load facts."""
    pid = server.process.pid if server else None
    context: dict[str, Any] = dict(wait_for_quiet(pid, settle_timeout_s))
    server_cpu = cpu_seconds(pid)
    meter = LoadMeter(pid)
    started = time.perf_counter()
    value = work()
    context["wall_s"] = time.perf_counter() - started
    context["foreign_cores_during"] = meter.foreign_cores()
    context["server_cpu_s"] = cpu_seconds(pid) - server_cpu
    context["loadavg_1m_after"] = os.getloadavg()[0]
    return value, context


def measure_one(
    server: Server | None, config: Config, n: int, repeat: int, workdir: Path, collected: Collected
) -> None:
    """Baseline then ollm for one (N, repeat), back to back so both see the same machine."""
    key = run_key(n, repeat)
    specs = make_run(n, repeat, config.max_tokens)
    if config.run_baseline:
        warmup = make_request(f"baseline-warmup-{key}", 8)
        records, ctx = measured(
            server,
            config.settle_timeout_s,
            lambda: run_baseline(baseline_gguf(), specs, warmup, workdir),
        )
        # The server was idle meanwhile; server_cpu_s shows whether it really was.
        collected.baseline[key] = records
        collected.context[f"baseline {key}"] = ctx
        print(f"  baseline  N={n:<2} {describe(records, serial=True, context=ctx)}", flush=True)
    if server is not None:
        records, ctx = measured(
            server,
            config.settle_timeout_s,
            lambda: asyncio.run(run_concurrent(server.base_url, specs, config.model)),
        )
        collected.ollm[key] = records
        collected.context[f"ollm {key}"] = ctx
        print(f"  ollm      N={n:<2} {describe(records, serial=False, context=ctx)}", flush=True)


def describe(records: Sequence[StreamRecord], *, serial: bool, context: dict[str, Any]) -> str:
    """A one-line progress note for a run."""
    start = min(r.send for r in records)
    arrivals = [start] * len(records) if serial else [r.send for r in records]
    summary = summarize_run(records, arrivals)
    errors = sum(1 for r in records if r.error)
    return (
        f"{fmt(summary['agg_tps'])} tok/s, TTFT p50 {fmt(summary['ttft_p50_s'], 1000, 0)} ms"
        + (f", {errors} errors" if errors else "")
        + f"  (others' load {context['foreign_cores_during']:.2f} cores)"
    )


def compare(ollm: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]]) -> dict[int, Any]:
    """ollm / baseline ratios per N (None where either side is missing)."""
    out: dict[int, Any] = {}
    for n in sorted(set(ollm) & set(base)):
        out[n] = {
            "agg_tps_ratio": ratio(ollm[n]["agg_tps"], base[n]["agg_tps"]),
            "ttft_p50_ratio": ratio(ollm[n]["ttft_p50_s"], base[n]["ttft_p50_s"]),
            "decode_tps_ratio": ratio(
                ollm[n]["stream_decode_tps_p50"], base[n]["stream_decode_tps_p50"]
            ),
        }
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def evaluate_targets(
    ratios: dict[int, Any], probe: dict[str, Any] | None
) -> list[tuple[str, float | None, str]]:
    """(description, measured value, PASS / MISS / n/a) for each target."""

    def verdict(value: float | None, ok: bool) -> str:
        return "n/a" if value is None else ("PASS" if ok else "MISS")

    decode = (ratios.get(1) or {}).get("decode_tps_ratio")
    agg8 = (ratios.get(8) or {}).get("agg_tps_ratio")
    ttft8 = (ratios.get(8) or {}).get("ttft_p50_ratio")
    p95 = probe["itl_p95_s"] * 1000 if probe and probe["itl_p95_s"] is not None else None
    return [
        (
            f"single-stream decode >= {TARGET_DECODE_RATIO}x baseline",
            decode,
            verdict(decode, (decode or 0) >= TARGET_DECODE_RATIO),
        ),
        (
            f"N=8 aggregate tok/s >= {TARGET_AGG_RATIO_N8}x baseline",
            agg8,
            verdict(agg8, (agg8 or 0) >= TARGET_AGG_RATIO_N8),
        ),
        (
            f"N=8 TTFT p50 <= {TARGET_TTFT_RATIO_N8}x baseline",
            ttft8,
            verdict(ttft8, ttft8 is not None and ttft8 <= TARGET_TTFT_RATIO_N8),
        ),
        (
            f"chunked-prefill ITL p95 < {TARGET_PREFILL_ITL_P95_MS:.0f} ms",
            p95,
            verdict(p95, p95 is not None and p95 < TARGET_PREFILL_ITL_P95_MS),
        ),
    ]


def warm_up(server: Server, model: str) -> StreamRecord:
    """One short request so model loading is not measured."""
    spec = make_request("ollm-warmup", 8)
    return asyncio.run(run_concurrent(server.base_url, [spec], model))[0]


def baseline_long_ttft(server: Server, config: Config, workdir: Path) -> float | None:
    """TTFT of the probe's long prompt alone on llama-cpp-python (its prefill speed)."""
    long_spec = probe_specs()[1]
    warmup = make_request("baseline-warmup-probe", 8)
    records, _ = measured(
        server,
        config.settle_timeout_s,
        lambda: run_baseline(baseline_gguf(), [long_spec], warmup, workdir),
    )
    record = records[0]
    return (record.chunks[0] - record.send) if record.chunks else None


def run_probe(
    server: Server, config: Config, workdir: Path, collected: Collected
) -> dict[str, Any]:
    """The chunked-prefill probe, on a quiet machine (plus the baseline's long-prompt TTFT)."""
    base_ttft = baseline_long_ttft(server, config, workdir) if config.run_baseline else None
    (stream, long), ctx = measured(
        server,
        config.settle_timeout_s,
        lambda: asyncio.run(prefill_probe(server.base_url, config.model)),
    )
    collected.context["probe"] = ctx
    collected.problems += check_records([stream], PREFILL_PROBE_STREAM_TOKENS, "probe")
    collected.problems += check_records([long], PREFILL_PROBE_LONG_MAX_TOKENS, "probe")
    return {**summarize_probe(stream, long), "baseline_long_ttft_s": base_ttft}


def collect(config: Config, workdir: Path) -> tuple[Collected, dict[str, Any] | None, str]:
    """Start the server (unless baseline-only), run every (N, repeat), then the probe."""
    collected = Collected()
    probe = None
    log = ""
    with contextlib.ExitStack() as stack:
        server = None
        if config.run_ollm:
            print("starting ollm server ...", flush=True)
            server = stack.enter_context(ollm_server(workdir))
            collected.problems += check_records([warm_up(server, config.model)], 8, "warm-up")
        for repeat in range(config.repeats):
            print(f"repeat {repeat + 1}/{config.repeats}", flush=True)
            for n in config.concurrency:
                measure_one(server, config, n, repeat, workdir, collected)
        if server is not None:
            print("chunked-prefill probe ...", flush=True)
            probe = run_probe(server, config, workdir, collected)
            log = log_tail(server.log_path, 60)
    return collected, probe, log


def run_benchmark(config: Config) -> dict[str, Any]:
    """Measure everything and assemble the result document."""
    result: dict[str, Any] = {"config": asdict(config), "environment": environment()}
    with tempfile.TemporaryDirectory(prefix="ollm-bench-") as tmp:
        collected, probe, log = collect(config, Path(tmp))
    problems = collected.problems
    for key, recs in collected.ollm.items():
        problems += check_records(recs, config.max_tokens, f"ollm {key}")
    for key, recs in collected.baseline.items():
        problems += check_records(recs, config.max_tokens, f"baseline {key}")
        idle = collected.context[f"baseline {key}"]
        if config.run_ollm and idle["server_cpu_s"] > 0.05 * idle["wall_s"]:
            problems.append(
                f"idle server used {idle['server_cpu_s']:.1f} CPU-s during the "
                f"{idle['wall_s']:.1f} s baseline run {key}"
            )
    ollm_summary = summaries_by_n(collected.ollm, config, serial=False)
    base_summary = summaries_by_n(collected.baseline, config, serial=True)
    ratios = compare(ollm_summary, base_summary)
    result.update(
        ollm={"summary": ollm_summary, "runs": records_json(collected.ollm, False)},
        baseline={"summary": base_summary, "runs": records_json(collected.baseline, True)},
        run_context=collected.context,
        ratios=ratios,
        prefill_probe=probe,
        targets=evaluate_targets(ratios, probe),
        problems=problems,
        server_log_tail=log,
    )
    result["environment"]["loadavg_end"] = os.getloadavg()
    return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in 1, 8 and 32 tokens only.")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Model id to request from ollm.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per N; medians reported.")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=120.0,
        help="Seconds to wait for other processes to go quiet before each run (0: don't).",
    )
    parser.add_argument("--no-baseline", action="store_true", help="Skip llama-cpp-python.")
    parser.add_argument("--baseline-only", action="store_true", help="Skip the ollm server.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, write the JSON; always exit 0 on completion."""
    args = parse_args(argv)
    config = Config(
        model=args.model,
        concurrency=[1, 8] if args.quick else [1, 4, 8, 16],
        max_tokens=32 if args.quick else 128,
        repeats=max(1, args.repeats),
        quick=args.quick,
        run_baseline=not args.no_baseline,
        run_ollm=not args.baseline_only,
        settle_timeout_s=max(0.0, args.settle_timeout),
    )
    if args.model != DEFAULT_MODEL and config.run_baseline:
        print(f"note: the baseline always runs the {BASELINE_DIST} GGUF", file=sys.stderr)
    result = run_benchmark(config)
    print_report(result)
    print(f"\nresults: {write_results(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
