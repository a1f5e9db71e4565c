"""Metrics, readiness and system info of a real server running SmolLM2."""

from __future__ import annotations

import asyncio
import json

import httpx
from prometheus_client.parser import text_string_to_metric_families

MODEL = "smollm2:135m"
STREAMS = 4
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> Samples:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def stream_chat(client: httpx.AsyncClient, n: int) -> dict[str, int]:
    """One streamed chat; its usage from the final chunk."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Count from {n} to {n + 20}."}],
        "max_tokens": 24,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    usage = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line.removeprefix("data: ")).get("usage") or usage
    assert usage is not None
    return usage


async def run_streams(base_url: str) -> list[dict[str, int]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        return await asyncio.gather(*(stream_chat(client, n) for n in range(STREAMS)))


def test_histograms_and_counters_move_under_streams(live_server: str) -> None:
    before = scrape(live_server)
    usages = asyncio.run(run_streams(live_server))
    after = scrape(live_server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    completion = sum(u["completion_tokens"] for u in usages)
    assert completion > STREAMS
    assert grew("ollm_generated_tokens_total", model=MODEL) == completion
    assert grew("ollm_prompt_tokens_total", model=MODEL) == sum(u["prompt_tokens"] for u in usages)
    assert grew("ollm_time_to_first_token_seconds_count", model=MODEL) == STREAMS
    assert grew("ollm_inter_token_latency_seconds_count", model=MODEL) == completion - STREAMS
    assert grew("ollm_inter_token_latency_seconds_sum", model=MODEL) > 0
    assert grew("ollm_queue_wait_seconds_count", model=MODEL) == STREAMS
    assert grew("ollm_batch_size_count", model=MODEL) > 0
    finished = sum(
        grew("ollm_requests_finished_total", model=MODEL, reason=reason)
        for reason in ("stop", "length")
    )
    assert finished == STREAMS
    route = "/v1/chat/completions"
    assert grew("ollm_http_requests_total", method="POST", route=route, status="200") == STREAMS
    assert value(after, "ollm_running_sequences", model=MODEL) == 0
    assert value(after, "ollm_queue_depth", model=MODEL) == 0
    assert value(after, "ollm_kv_cells_used", model=MODEL) == 0
    assert value(after, "ollm_model_loads_total", model=MODEL) >= 1


def test_ready(live_server: str) -> None:
    response = httpx.get(f"{live_server}/ready", timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["default_model"]["detail"] == f"{MODEL} loaded"


def test_system_reports_the_machine_and_the_loaded_model(live_server: str) -> None:
    info = httpx.get(f"{live_server}/api/v1/system", timeout=30).json()
    assert info["cpu"]["logical_cores"] > 0
    assert info["memory"]["total_bytes"] > 0
    assert info["backend"]["system_info"]  # llama.cpp's build string, e.g. "CPU : SSE3 = 1 |"
    assert info["versions"]["llama-cpp-python"] != "not installed"
    loaded = {m["id"]: m for m in info["loaded_models"]}
    assert loaded[MODEL]["memory_bytes"] > 0
