"""Residency with the fake backend: limits, LRU, keep-alive, leases, single-flight loads."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ollm.backends.fake import FakeBackend
from ollm.chat.messages import ChatMessage
from ollm.errors import ContextLengthExceededError, ModelLoadError, ModelNotFoundError
from ollm.sampling import SamplingParams
from ollm.services.inference.completions import CompletionService
from ollm.services.models.residency import (
    ResidencyLimits,
    Resident,
    available_memory,
    estimate_memory,
    plan_evictions,
)
from ollm.services.models.service import ModelEntry, ModelService
from ollm.settings import EngineSettings, Settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- the planner alone -------------------------------------------------------------------


def r(model_id: str, size: int, *, busy: bool = False, used: int = 0) -> Resident:
    return Resident(model_id, size, busy, used)


def test_plan_fits_without_evicting() -> None:
    limits = ResidencyLimits(max_models=3, budget_bytes=100)
    assert plan_evictions([r("a", 30), r("b", 30)], 40, limits) == []


def test_plan_count_limit_evicts_least_recently_used_idle() -> None:
    limits = ResidencyLimits(max_models=2, budget_bytes=1000)
    residents = [r("a", 10, used=5), r("b", 10, used=2)]
    assert plan_evictions(residents, 10, limits) == ["b"]


def test_plan_budget_evicts_as_many_as_needed() -> None:
    limits = ResidencyLimits(max_models=5, budget_bytes=100)
    residents = [r("a", 40, used=1), r("b", 30, used=2), r("c", 20, used=3)]
    assert plan_evictions(residents, 60, limits) == ["a", "b"]


def test_plan_never_evicts_busy_models() -> None:
    limits = ResidencyLimits(max_models=2, budget_bytes=1000)
    residents = [r("a", 10, busy=True, used=1), r("b", 10, used=9)]
    assert plan_evictions(residents, 10, limits) == ["b"]
    both_busy = [r("a", 10, busy=True), r("b", 10, busy=True)]
    assert plan_evictions(both_busy, 10, limits) is None  # wait for one to finish


def test_plan_counts_pending_loads_and_frees() -> None:
    limits = ResidencyLimits(max_models=2, budget_bytes=100)
    assert plan_evictions([], 10, limits, pending=[10, 10]) is None
    assert plan_evictions([], 60, limits, pending=[50]) is None
    assert plan_evictions([], 50, limits, pending=[50]) == []


def test_plan_lets_an_oversized_model_load_alone() -> None:
    limits = ResidencyLimits(max_models=3, budget_bytes=100)
    assert plan_evictions([], 500, limits) == []
    assert plan_evictions([r("a", 10)], 500, limits) == ["a"]
    assert plan_evictions([r("a", 10, busy=True)], 500, limits) is None


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2048 kB\nMemAvailable:    1024 kB\n")
    assert available_memory(meminfo) == 1024 * 1024
    assert available_memory(tmp_path / "missing") is None


# -- the service with a fake loader --------------------------------------------------------


class CountingLoader:
    """Builds fake backends, counting loads; ``gate`` (if set) holds loads until opened."""

    def __init__(self, *, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[str] = []
        self.backends: list[FakeBackend] = []
        self.gate: threading.Event | None = None
        self.fail = fail

    def __call__(self, path: Path, engine: EngineSettings) -> FakeBackend:
        self.calls.append(path.name)
        if self.gate is not None:
            assert self.gate.wait(10), "test never opened the gate"
        if path.name in self.fail:
            raise RuntimeError("corrupt weights")
        backend = FakeBackend(
            num_sequences=engine.max_running, context_per_sequence=engine.context_per_sequence
        )
        self.backends.append(backend)
        return backend


def make_service(
    tmp_path: Path,
    *,
    models: dict[str, int],
    loader: CountingLoader | None = None,
    clock: Callable[[], float] = time.time,
    **settings: Any,
) -> tuple[ModelService, CountingLoader]:
    """A service over fake weight files of the given sizes (their memory estimate)."""
    entries = []
    for model_id, size in models.items():
        path = tmp_path / f"{model_id.replace(':', '_')}.bin"
        path.write_bytes(b"x" * size)
        entries.append(ModelEntry(model_id, path))
    engine = EngineSettings(max_running=2, max_waiting=4, context_per_sequence=256, threads=1)
    config = Settings(home=tmp_path / "home", engine=engine, default_model="a:1", **settings)
    loader = loader or CountingLoader()
    return ModelService(config, entries=entries, loader=loader, clock=clock), loader


@pytest.fixture
async def closing() -> AsyncIterator[list[ModelService]]:
    services: list[ModelService] = []
    yield services
    for service in services:
        await service.close()


def loaded_ids(service: ModelService) -> set[str]:
    return {m.model_id for m in service.loaded_models()}


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_ten_concurrent_first_requests_load_once(tmp_path: Path, closing: list) -> None:
    service, loader = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    loader.gate = threading.Event()
    tasks = [asyncio.ensure_future(service.acquire("a:1")) for _ in range(10)]
    await wait_until(lambda: loader.calls != [])
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in tasks)  # all waiting on the one load
    loader.gate.set()
    results = await asyncio.gather(*tasks)
    assert loader.calls == ["a_1.bin"]
    assert all(result is results[0] for result in results)
    assert results[0].in_flight == 10


async def test_count_limit_unloads_least_recently_used_idle(tmp_path: Path, closing: list) -> None:
    service, loader = make_service(
        tmp_path, models={"a:1": 10, "b:1": 10, "c:1": 10}, max_loaded_models=2
    )
    closing.append(service)
    await service.get("a:1")
    await service.get("b:1")
    await service.get("a:1")  # a is now more recent than b
    await service.get("c:1")
    assert loaded_ids(service) == {"a:1", "c:1"}
    assert loader.calls == ["a_1.bin", "b_1.bin", "c_1.bin"]


async def test_memory_budget_unloads_until_it_fits(tmp_path: Path, closing: list) -> None:
    sizes = {"a:1": 400, "b:1": 400, "c:1": 700}
    service, _ = make_service(tmp_path, models=sizes, memory_budget=1000)
    closing.append(service)
    await service.get("a:1")
    await service.get("b:1")
    assert loaded_ids(service) == {"a:1", "b:1"}
    loaded_c = await service.get("c:1")
    assert loaded_ids(service) == {"c:1"}  # 400 + 700 > 1000, so both had to go
    assert loaded_c.size_bytes == 700


async def test_busy_model_is_never_unloaded_load_waits(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10, "b:1": 10}, max_loaded_models=1)
    closing.append(service)
    held = await service.acquire("a:1")
    waiting = asyncio.ensure_future(service.acquire("b:1"))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # queued, not failed
    assert loaded_ids(service) == {"a:1"}
    service.release(held)
    loaded_b = await asyncio.wait_for(waiting, 5)
    assert loaded_ids(service) == {"b:1"}
    assert loaded_b.in_flight == 1


async def test_keep_alive_zero_unloads_when_requests_end(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    first = await service.acquire("a:1", keep_alive=0)
    second = await service.acquire("a:1", keep_alive=0)
    service.release(first)
    assert loaded_ids(service) == {"a:1"}  # one request still runs
    service.release(second)
    assert loaded_ids(service) == set()


async def test_negative_keep_alive_never_expires(tmp_path: Path, closing: list) -> None:
    now = [1000.0]
    service, _ = make_service(tmp_path, models={"a:1": 10}, clock=lambda: now[0])
    closing.append(service)
    loaded = await service.get("a:1", keep_alive=-1)
    assert loaded.expires_at is None
    assert service.expire_idle(now=now[0] + 10**9) == []
    assert loaded_ids(service) == {"a:1"}
    await service.get("a:1", keep_alive=1e300)  # past any calendar: reported as never
    assert loaded.expires_at is None


async def test_keep_alive_expiry(tmp_path: Path, closing: list) -> None:
    now = [1000.0]
    service, _ = make_service(tmp_path, models={"a:1": 10, "b:1": 10}, clock=lambda: now[0])
    closing.append(service)
    loaded = await service.get("a:1", keep_alive=10)
    await service.get("b:1")  # the default, 300 s
    assert loaded.expires_at == pytest.approx(1010.0)
    assert service.expire_idle(now=1005.0) == []
    assert service.expire_idle(now=1011.0) == ["a:1"]
    assert loaded_ids(service) == {"b:1"}
    assert service.expire_idle(now=1301.0) == ["b:1"]


async def test_a_held_model_does_not_expire(tmp_path: Path, closing: list) -> None:
    now = [1000.0]
    service, _ = make_service(tmp_path, models={"a:1": 10}, clock=lambda: now[0])
    closing.append(service)
    held = await service.acquire("a:1", keep_alive=1)
    assert service.expire_idle(now=5000.0) == []
    now[0] = 5000.0
    service.release(held)  # the countdown starts now
    assert held.expires_at == pytest.approx(5001.0)
    assert service.expire_idle(now=5000.5) == []
    assert service.expire_idle(now=5001.5) == ["a:1"]


async def test_background_task_unloads_expired_models(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    await service.get("a:1", keep_alive=0.05)
    await wait_until(lambda: loaded_ids(service) == set())


async def test_unload_waits_for_running_requests(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    assert await service.unload("a:1") is False  # not loaded
    held = await service.acquire("a:1")
    assert await service.unload("a:1") is True
    assert loaded_ids(service) == {"a:1"}  # scheduled, not cut off
    service.release(held)
    assert loaded_ids(service) == set()
    with pytest.raises(ModelNotFoundError):
        await service.unload("nope:1")


async def test_failed_load_frees_its_reservation(tmp_path: Path, closing: list) -> None:
    loader = CountingLoader(fail={"bad_1.bin"})
    service, _ = make_service(
        tmp_path, models={"bad:1": 10, "a:1": 10}, loader=loader, max_loaded_models=1
    )
    closing.append(service)
    with pytest.raises(ModelLoadError):
        await service.get("bad:1")
    assert (await service.get("a:1")).model_id == "a:1"


async def test_hold_context_manager(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    async with service.hold("a:1") as loaded:
        assert loaded.in_flight == 1
    assert loaded.in_flight == 0


# -- leases held by generations ----------------------------------------------------------

PARAMS = SamplingParams(temperature=0.0, max_tokens=5)


async def test_generation_holds_its_model_until_the_stream_ends(
    tmp_path: Path, closing: list
) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    completions = CompletionService(service)
    messages = [ChatMessage(role="user", content="hi")]
    generation = await completions.chat(model="a:1", messages=messages, params=PARAMS)
    loaded = service.loaded_models()[0]
    assert loaded.in_flight == 1
    assert await service.unload("a:1") is True
    assert loaded_ids(service) == {"a:1"}  # the stream is not cut off...
    text = "".join([delta.text async for delta in generation.stream])
    assert text == "Hello"  # ...it runs to its end
    assert loaded.in_flight == 0
    assert loaded_ids(service) == set()  # and then the model goes


async def test_closing_a_stream_early_releases(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    completions = CompletionService(service)
    generation = await completions.complete(model="a:1", prompt="x", params=PARAMS)
    await generation.stream.__anext__()
    await generation.stream.aclose()
    assert service.loaded_models()[0].in_flight == 0


async def test_refused_request_releases_at_once(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    completions = CompletionService(service)
    too_long = SamplingParams(max_tokens=10_000)
    with pytest.raises(ContextLengthExceededError):
        await completions.complete(model="a:1", prompt="x", params=too_long)
    assert service.loaded_models()[0].in_flight == 0


async def test_a_forgotten_stream_releases_when_collected(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    completions = CompletionService(service)
    generation = await completions.complete(model="a:1", prompt="x", params=PARAMS)
    loaded = service.loaded_models()[0]
    assert loaded.in_flight == 1
    del generation
    gc.collect()
    await wait_until(lambda: loaded.in_flight == 0)


async def test_keep_alive_passes_through_completions(tmp_path: Path, closing: list) -> None:
    service, _ = make_service(tmp_path, models={"a:1": 10})
    closing.append(service)
    completions = CompletionService(service)
    generation = await completions.complete(model="a:1", prompt="x", params=PARAMS, keep_alive=-1)
    async for _ in generation.stream:
        pass
    assert service.loaded_models()[0].expires_at is None


def test_a_quantized_kv_cache_is_estimated_smaller() -> None:
    f16 = estimate_memory(1000, 24, 100)
    assert f16 == 1000 + 2400
    assert estimate_memory(1000, 24, 100, kv_cache_type="q8_0") == 1000 + 1275  # 34/64
    assert estimate_memory(1000, 24, 100, kv_cache_type="q4_0") == 1000 + 675  # 18/64
    assert estimate_memory(1000, None, 100, kv_cache_type="q8_0") == 1000


# -- the default KV pool, sized to the memory budget ------------------------------------


def _pool_service(tmp_path: Path, budget: int, **engine: Any) -> tuple[ModelService, list[Any]]:
    from test_model_gguf_info import write_gguf

    from ollm.services.models.gguf_info import read_gguf_info

    tmp_path.mkdir(parents=True, exist_ok=True)
    weights = write_gguf(tmp_path / "m.gguf", context=32768, layers=4, embedding=64, heads=4)
    per_cell = read_gguf_info(weights).kv_bytes_per_cell()
    seen: list[Any] = []

    def loader(_path: Path, settings: EngineSettings) -> FakeBackend:
        seen.append(settings)
        return FakeBackend(num_sequences=settings.max_running)

    config = Settings(
        home=tmp_path / "home",
        engine=EngineSettings(threads=1, **engine),
        default_model="m:1",
        memory_budget=weights.stat().st_size + budget * per_cell,
        kv_disk_budget=0,
    )
    return ModelService(config, entries=[ModelEntry("m:1", weights)], loader=loader), seen


async def test_the_default_pool_shrinks_to_what_the_budget_holds(tmp_path: Path) -> None:
    service, seen = _pool_service(tmp_path, budget=5000)
    try:
        await service.get("m:1")
    finally:
        await service.close()
    assert seen[0].kv_pool_cells == 4864  # 5,000 cells' room, in whole 256-cell blocks


async def test_a_roomy_budget_keeps_the_default_and_a_chosen_pool_is_kept(tmp_path: Path) -> None:
    roomy, seen = _pool_service(tmp_path / "a", budget=100_000)
    chosen, seen_chosen = _pool_service(tmp_path / "b", budget=1000, kv_pool_cells=6000)
    try:
        await roomy.get("m:1")
        await chosen.get("m:1")
    finally:
        await roomy.close()
        await chosen.close()
    assert seen[0].kv_pool_cells is None  # the default 8,192 fits
    assert seen_chosen[0].kv_pool_cells == 6000  # what the operator asked for, as asked
