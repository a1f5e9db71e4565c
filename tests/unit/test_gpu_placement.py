"""Where models run, without a GPU: nvidia-smi faked on PATH, the offload arithmetic, and
the placement that ``/api/ps``, ``ollm ps`` and ``/api/v1/system`` report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from api_v1_harness import v1_app

from ollm.backends.llamacpp.backend import offloaded_layers
from ollm.cli.render import processor
from ollm.placement import processor_split
from ollm.placement.gpus import detect_gpus, parse_nvidia_smi

SMI_ROWS = (
    "0, NVIDIA H200, 143771, 140012, 580.65.06, 9.0\n"
    "1, NVIDIA RTX A4000, 16376, [N/A], 580.65.06, 8.6\n"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``nvidia-smi`` on PATH that answers the query ollm sends with two GPUs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=index,name,memory.total,memory.free,driver_version,'
        f"compute_cap*) printf '{SMI_ROWS}';; *) exit 6;; esac\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tool


def test_nvidia_smi_rows_parse_and_odd_rows_are_skipped() -> None:
    [h200] = parse_nvidia_smi(SMI_ROWS + "No devices were found\n")  # "[N/A]" row skipped
    assert (h200.index, h200.name, h200.driver) == (0, "NVIDIA H200", "580.65.06")
    assert h200.memory_total_bytes == 143771 * 1024**2
    assert h200.memory_free_bytes == 140012 * 1024**2
    assert h200.compute_capability == "9.0"


def test_gpus_are_read_from_nvidia_smi_on_path(fake_nvidia_smi: Path) -> None:
    assert [gpu.name for gpu in detect_gpus()] == ["NVIDIA H200"]


def test_no_nvidia_smi_or_a_failing_one_means_no_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detect_gpus() == []
    broken = tmp_path / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'driver not loaded' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert detect_gpus() == []


@pytest.mark.parametrize(
    ("layers", "requested", "can_offload", "expected"),
    [
        (30, None, True, 30),  # llama.cpp's default: every layer
        (30, -1, True, 30),
        (30, 12, True, 12),
        (30, 99, True, 30),
        (30, 0, True, 0),
        (30, None, False, 0),  # a CPU build offloads nothing, whatever was asked
    ],
)
def test_offloaded_layers(
    layers: int, requested: int | None, can_offload: bool, expected: int
) -> None:
    assert offloaded_layers(layers, requested, can_offload) == expected


@pytest.mark.parametrize(
    ("size", "on_gpu", "shown"),
    [
        (100, 0, "100% CPU"),
        (100, 100, "100% GPU"),
        (100, 65, "35%/65% CPU/GPU"),
        (0, 0, "100% CPU"),
    ],
)
def test_processor_column_reads_like_ollama_ps(size: int, on_gpu: int, shown: str) -> None:
    assert processor_split(size, on_gpu) == shown
    assert processor({"size": size, "size_vram": on_gpu}) == shown


@pytest.mark.anyio
async def test_placement_is_reported_by_api_ps_and_the_system_api(
    tmp_path: Path, fake_nvidia_smi: Path
) -> None:
    async with v1_app(tmp_path) as h:
        await h.client.post("/api/generate", json={"model": "fake:1"})
        [model] = (await h.client.get("/api/ps")).json()["models"]
        assert model["size_vram"] == 0  # the fake backend runs "on the CPU"
        # The same model with 12 of its 30 layers on the GPU.
        h.backend.facts = dataclasses.replace(h.backend.facts, layers=30, gpu_layers=12)
        [model] = (await h.client.get("/api/ps")).json()["models"]
        assert model["size_vram"] == model["size"] * 12 // 30
        split = processor(model)
        assert split.endswith("% CPU/GPU") and split == processor_split(
            model["size"], model["size"] * 12 // 30
        )
        info = (await h.client.get("/api/v1/system")).json()
    [gpu] = info["gpus"]
    assert gpu["name"] == "NVIDIA H200" and gpu["memory_free_bytes"] == 140012 * 1024**2
    [loaded] = info["loaded_models"]
    assert loaded["processor"] == split
    assert loaded["gpu_bytes"] == model["size_vram"]
