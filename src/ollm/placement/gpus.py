"""The GPUs of this machine, as their vendor's tool reports them.

NVIDIA only for now: ``nvidia-smi`` is on every machine with the driver, answers in a
fraction of a second, and needs no library in this process. A machine without it (or
whose driver does not answer) has no GPUs as far as ollm can tell; that is not an error.
"""

from __future__ import annotations

import csv
import shutil
import subprocess

from pydantic import BaseModel

MIB = 1024**2
_QUERY = "index,name,memory.total,memory.free,driver_version,compute_cap"
_TIMEOUT_S = 5.0


class GpuInfo(BaseModel):
    """One GPU: what it is and how much of its memory is free now."""

    index: int
    vendor: str
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    driver: str
    compute_capability: str | None = None


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """Rows of ``nvidia-smi --query-gpu=<_QUERY> --format=csv,noheader,nounits``; rows that
    do not parse (a driver message, "[N/A]" memory) are skipped."""
    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) < 5:
            continue
        try:
            gpus.append(
                GpuInfo(
                    index=int(row[0]),
                    vendor="NVIDIA",
                    name=row[1].strip(),
                    memory_total_bytes=int(float(row[2])) * MIB,
                    memory_free_bytes=int(float(row[3])) * MIB,
                    driver=row[4].strip(),
                    compute_capability=row[5].strip() if len(row) > 5 else None,
                )
            )
        except ValueError:
            continue
    return gpus


def detect_gpus() -> list[GpuInfo]:
    """The GPUs ``nvidia-smi`` sees now (blocking, up to a few seconds: call it off the event
    loop); an empty list when there is no tool or it fails."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        done = subprocess.run(
            [tool, f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else []
