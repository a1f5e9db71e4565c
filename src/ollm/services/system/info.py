"""What this server runs on and what it runs: CPU, memory, GPU, backend, versions, models.

The parts that never change (CPU model, versions, llama.cpp's build string) are read
once, off the event loop; memory and loaded models are read on each call.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import psutil
from pydantic import BaseModel

from ollm import __version__
from ollm.placement.gpus import GpuInfo, detect_gpus
from ollm.services.models.service import LoadedModel, ModelService

CPUINFO = Path("/proc/cpuinfo")


class CpuInfo(BaseModel):
    model: str
    architecture: str
    logical_cores: int
    physical_cores: int | None


class MemoryInfo(BaseModel):
    total_bytes: int
    available_bytes: int
    process_rss_bytes: int


class BackendInfo(BaseModel):
    name: str
    device: str
    system_info: str | None  # llama.cpp's build and instruction sets, once the library is loaded


class LoadedModelInfo(BaseModel):
    id: str
    memory_bytes: int  # estimate: weights plus the KV cache of every slot
    gpu_bytes: int  # of which on the accelerator (by the share of layers offloaded)
    processor: str  # where it runs, as `ollm ps` and Ollama print it: "100% CPU", ...
    load_seconds: float
    in_flight: int
    running: int
    waiting: int
    max_running: int
    context_per_sequence: int
    expires_at: float | None  # Unix time it unloads if idle; None: never


class SystemInfo(BaseModel):
    """The body of ``GET /api/v1/system``."""

    hostname: str
    os: str
    cpu: CpuInfo
    memory: MemoryInfo
    gpus: list[GpuInfo]  # what nvidia-smi reports now; empty without one
    backend: BackendInfo
    versions: dict[str, str]
    default_model: str
    loaded_models: list[LoadedModelInfo]
    uptime_seconds: float


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), or what ``platform`` knows."""
    try:
        for line in CPUINFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def llama_system_info() -> str | None:
    """llama.cpp's system info string, or None if the library cannot be loaded."""
    try:
        from ollm.backends.llamacpp import native  # heavy: loads the shared library
    except Exception:  # no wheel, or a library that does not load on this CPU
        return None
    return native.system_info().strip()


def llama_device() -> str:
    """``gpu`` when this llama.cpp build can offload layers to an accelerator, else ``cpu``."""
    try:
        from ollm.backends.llamacpp import native
    except Exception:
        return "cpu"
    return "gpu" if native.supports_gpu_offload() else "cpu"


class SystemInfoService:
    """Builds :class:`SystemInfo` for one app (``started`` is its start, monotonic)."""

    def __init__(self, models: ModelService, *, started: float | None = None) -> None:
        self.models = models
        self.started = time.monotonic() if started is None else started
        self._static: tuple[CpuInfo, BackendInfo, dict[str, str]] | None = None

    async def snapshot(self) -> SystemInfo:
        if self._static is None:
            self._static = await asyncio.to_thread(self._read_static)
        cpu, backend, versions = self._static
        gpus = await asyncio.to_thread(detect_gpus)  # free memory changes: read each time
        return SystemInfo(
            hostname=platform.node(),
            os=f"{platform.system()} {platform.release()}",
            cpu=cpu,
            memory=self._memory(),
            gpus=gpus,
            backend=backend,
            versions=versions,
            default_model=self.models.settings.default_model,
            loaded_models=[_loaded_info(m) for m in self.models.loaded_models()],
            uptime_seconds=round(time.monotonic() - self.started, 3),
        )

    @staticmethod
    def _read_static() -> tuple[CpuInfo, BackendInfo, dict[str, str]]:
        cpu = CpuInfo(
            model=cpu_model(),
            architecture=platform.machine(),
            logical_cores=os.cpu_count() or 1,
            physical_cores=psutil.cpu_count(logical=False),
        )
        backend = BackendInfo(
            name="llama.cpp", device=llama_device(), system_info=llama_system_info()
        )
        versions = {
            "ollm": __version__,
            "python": platform.python_version(),
            "llama-cpp-python": package_version("llama_cpp_python"),
            "fastapi": package_version("fastapi"),
        }
        return cpu, backend, versions

    @staticmethod
    def _memory() -> MemoryInfo:
        memory = psutil.virtual_memory()
        return MemoryInfo(
            total_bytes=memory.total,
            available_bytes=memory.available,
            process_rss_bytes=psutil.Process().memory_info().rss,
        )


def _loaded_info(loaded: LoadedModel) -> LoadedModelInfo:
    stats = loaded.engine.stats
    return LoadedModelInfo(
        id=loaded.model_id,
        memory_bytes=loaded.size_bytes,
        gpu_bytes=loaded.size_vram,
        processor=loaded.processor,
        load_seconds=round(loaded.load_duration, 3),
        in_flight=loaded.in_flight,
        running=stats.running,
        waiting=stats.waiting,
        max_running=loaded.engine.limits.max_running,
        context_per_sequence=loaded.engine.limits.context_per_sequence,
        expires_at=loaded.expires_at,
    )
