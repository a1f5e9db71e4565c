"""The requests both sides serve: deterministic prompts, seeds and chat bodies."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Any

from benchmarks.config import (
    CHARS_PER_TOKEN,
    LONG_PROMPT_TOKENS,
    PREFILL_PROBE_LONG_MAX_TOKENS,
    PREFILL_PROBE_STREAM_TOKENS,
    PROMPT_TOKENS,
    TEMPERATURE,
)


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


def probe_specs() -> tuple[RequestSpec, RequestSpec]:
    """The probe's running stream and its ~2,000-token interloper."""
    return (
        make_request("probe-stream", PREFILL_PROBE_STREAM_TOKENS),
        make_request("probe-long", PREFILL_PROBE_LONG_MAX_TOKENS, LONG_PROMPT_TOKENS),
    )
