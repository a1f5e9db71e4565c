"""Which models may stay in memory: the count limit, the memory budget, and LRU eviction.

Pure logic, no asyncio: :func:`plan_evictions` decides,
:class:`ollm.services.models.service.ModelService`
acts. A model's memory is estimated before loading as its file size plus its KV cache
(layers x cells x (K + V width) x 2 bytes, from the GGUF header): llama.cpp maps the file
and allocates the whole KV cache up front, so that is what a load costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BUDGET_SHARE = 0.5
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True, slots=True)
class Resident:
    """What the planner needs to know about one loaded model."""

    model_id: str
    size_bytes: int  # all of it, host and device
    busy: bool  # requests in flight: never evicted
    last_used: int  # larger means more recently used
    device_bytes: int = 0  # of which on the GPUs

    @property
    def host_bytes(self) -> int:
        return self.size_bytes - self.device_bytes


@dataclass(frozen=True, slots=True)
class ResidencyLimits:
    """At most ``max_models`` models, their host memory together within ``budget_bytes``."""

    max_models: int
    budget_bytes: int


def plan_evictions(
    residents: Sequence[Resident],
    need_bytes: int,
    limits: ResidencyLimits,
    *,
    pending: Sequence[int] = (),
    need_device: int = 0,
    device_room: int = 0,
) -> list[str] | None:
    """Idle models to unload, least recently used first, so a model of ``need_bytes``
    (``need_device`` of them on the GPUs) fits.

    Host and device memory are counted apart: the host budget holds what resident models
    keep in host memory, and ``device_room`` is what the GPUs have free now, so device
    memory is made only by unloading models that hold some: a CPU-only model is not
    unloaded for the GPU's sake. ``pending`` are host sizes of loads in progress and of models
    still being freed: they count against the host budget and the count. Returns ``[]``
    when it fits already, and None when it cannot fit until a busy model becomes idle (the
    caller waits). A model larger than the whole budget still loads when nothing else is
    resident, rather than never.
    """
    count = len(residents) + len(pending)
    used = sum(r.host_bytes for r in residents) + sum(pending)
    need_host = need_bytes - need_device
    device_free = device_room

    def count_fits() -> bool:
        return count < limits.max_models

    def host_fits() -> bool:
        return used + need_host <= limits.budget_bytes or count == 0

    def device_fits() -> bool:
        return need_device <= device_free

    victims: list[str] = []
    for resident in sorted((r for r in residents if not r.busy), key=lambda r: r.last_used):
        if count_fits() and host_fits() and device_fits():
            break
        if count_fits() and host_fits() and not resident.device_bytes:
            continue  # only device memory is short, and this one holds none
        victims.append(resident.model_id)
        count -= 1
        used -= resident.host_bytes
        device_free += resident.device_bytes
    return victims if count_fits() and host_fits() and device_fits() else None


# Bytes of one K or V element, by cache type, relative to f16's two: q8_0 packs 32 values
# into 34 bytes, q4_0 into 18.
KV_TYPE_SCALE = {"f16": 1.0, "q8_0": 34 / 64, "q4_0": 18 / 64}


def estimate_memory(
    file_size: int, kv_bytes_per_cell: int | None, cells: int, *, kv_cache_type: str = "f16"
) -> int:
    """Bytes a loaded model takes: its weights plus a KV cache of ``cells`` cells
    (``kv_bytes_per_cell`` is the f16 figure; other cache types scale it)."""
    return file_size + int((kv_bytes_per_cell or 0) * cells * KV_TYPE_SCALE[kv_cache_type])


def available_memory(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, rest = line.partition(":")
        if key == "MemAvailable":
            fields = rest.split()
            return int(fields[0]) * 1024 if fields and fields[0].isdigit() else None
    return None


def default_budget(share: float = DEFAULT_BUDGET_SHARE, *, fallback: int = 8 * 1024**3) -> int:
    """A share of the memory available now; ``fallback`` where it cannot be read."""
    available = available_memory()
    return int(available * share) if available is not None else fallback
