"""Metrics over the real app and the fake backend: series, labels, route templates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_openai_api_fake import HI, Harness, running_app

from ollm.engine.loop import Distribution, EngineStats
from ollm.engine.outputs import RequestOutput
from ollm.observability import Metrics
from ollm.observability.tokens import TokenObserver

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_app(tmp_path) as harness:
        yield harness


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape(h: Harness) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await h.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def chat(h: Harness, *, stream: bool) -> dict:
    body = {"model": "fake:1", "messages": HI, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = await h.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    if not stream:
        return response.json()["usage"]
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.splitlines()
        if line.startswith("data: {")
    ]
    return next(e["usage"] for e in reversed(events) if e.get("usage"))


async def test_token_series_move_with_chats(h: Harness) -> None:
    usages = [await chat(h, stream=True), await chat(h, stream=False)]
    found = await scrape(h)
    completion = sum(u["completion_tokens"] for u in usages)
    prompt = sum(u["prompt_tokens"] for u in usages)
    assert value(found, "ollm_generated_tokens_total", model="fake:1") == completion
    assert value(found, "ollm_prompt_tokens_total", model="fake:1") == prompt
    assert value(found, "ollm_time_to_first_token_seconds_count", model="fake:1") == 2
    assert value(found, "ollm_inter_token_latency_seconds_count", model="fake:1") == completion - 2
    assert value(found, "ollm_requests_finished_total", model="fake:1", reason="stop") == 2
    assert value(found, "ollm_queue_wait_seconds_count", model="fake:1") == 2
    assert value(found, "ollm_batch_size_count", model="fake:1") > 0
    # prompt tokens computed (fewer if a prefix was cached) plus one per decode step
    assert value(found, "ollm_batch_tokens_sum", model="fake:1") >= completion - 2
    assert value(found, "ollm_running_sequences", model="fake:1") == 0
    assert value(found, "ollm_queue_depth", model="fake:1") == 0
    assert value(found, "ollm_kv_cells_used", model="fake:1") == 0
    for counter in (
        "ollm_prefix_cache_hits_total",
        "ollm_prefix_cache_tokens_total",
        "ollm_prefix_cache_copies_total",
        "ollm_kv_snapshot_saves_total",
        "ollm_kv_snapshot_loads_total",
        "ollm_kv_preemptions_total",
    ):
        assert (counter, (("model", "fake:1"),)) in found
    assert value(found, "ollm_model_loads_total", model="fake:1") == 1
    assert value(found, "ollm_model_load_seconds_count", model="fake:1") == 1


async def test_http_requests_labelled_by_route_template(h: Harness) -> None:
    await h.client.get("/v1/models/fake:2")
    await h.client.get("/v1/models/no-such-model")
    await h.client.get("/no/such/path")
    found = await scrape(h)
    route = "/v1/models/{model_id}"
    assert value(found, "ollm_http_requests_total", method="GET", route=route, status="200") == 1
    assert value(found, "ollm_http_requests_total", method="GET", route=route, status="404") == 1
    unmatched = value(
        found, "ollm_http_requests_total", method="GET", route="unmatched", status="404"
    )
    assert unmatched == 1
    assert value(found, "ollm_http_request_duration_seconds_count", method="GET", route=route) == 2
    assert not any("fake:2" in dict(labels).get("route", "") for _, labels in found)


async def test_unload_keeps_counters_and_counts_the_unload(h: Harness) -> None:
    await chat(h, stream=False)
    before = await scrape(h)
    assert (
        await h.client.post("/api/generate", json={"model": "fake:1", "keep_alive": 0})
    ).is_success
    for _ in range(100):
        found = await scrape(h)
        if value(found, "ollm_model_unloads_total", model="fake:1") == 1:
            break
    assert value(found, "ollm_model_unloads_total", model="fake:1") == 1
    assert ("ollm_running_sequences", (("model", "fake:1"),)) not in found  # gauges go with it
    for name in ("ollm_queue_wait_seconds_count", "ollm_batch_size_count", "ollm_batch_tokens_sum"):
        assert value(found, name, model="fake:1") == value(before, name, model="fake:1") > 0


async def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with running_app(tmp_path / "a") as first, running_app(tmp_path / "b") as second:
        await chat(first, stream=False)
        assert value(await scrape(first), "ollm_model_loads_total", model="fake:1") == 1
        assert value(await scrape(second), "ollm_generated_tokens_total", model="fake:1") == 0


def test_distribution_buckets_are_upper_bounds() -> None:
    dist = Distribution((1, 2))
    for v in (0.5, 1, 1.5, 3):
        dist.observe(v)
    assert dist.counts == [2, 1, 1]
    assert dist.total == 6.0


def test_token_observer_ttft_once_and_itl_per_token() -> None:
    metrics = Metrics()
    observe = metrics.engine_observer("m")
    assert isinstance(observe, TokenObserver)
    first = RequestOutput("r", "a", (5,), num_prompt_tokens=7, num_output_tokens=1)
    first.first_token_latency = 0.2
    observe([first], 10.0)
    observe([RequestOutput("r", "bc", (6, 7), num_prompt_tokens=7, num_output_tokens=3)], 10.5)
    last = RequestOutput("r", "", (), num_prompt_tokens=7, num_output_tokens=3)
    last.finish_reason = "length"
    last.first_token_latency = 0.2  # repeated on later deltas: still one TTFT
    observe([last], 10.6)
    found = samples(metrics.render().decode())
    assert value(found, "ollm_time_to_first_token_seconds_count", model="m") == 1
    assert value(found, "ollm_inter_token_latency_seconds_count", model="m") == 2
    assert value(found, "ollm_inter_token_latency_seconds_sum", model="m") == pytest.approx(0.5)
    assert value(found, "ollm_generated_tokens_total", model="m") == 3
    assert value(found, "ollm_prompt_tokens_total", model="m") == 7
    assert value(found, "ollm_requests_finished_total", model="m", reason="length") == 1


def test_retired_engine_series_add_up() -> None:
    metrics = Metrics()
    stats = EngineStats()
    stats.batch_sequences.observe(3)
    metrics.model_unloaded("m", stats)
    metrics.model_unloaded("m", stats)
    found = samples(metrics.render().decode())
    assert value(found, "ollm_batch_size_count", model="m") == 2
    assert value(found, "ollm_batch_size_bucket", model="m", le="4.0") == 2
    assert value(found, "ollm_batch_size_bucket", model="m", le="2.0") == 0
    assert value(found, "ollm_model_unloads_total", model="m") == 2
