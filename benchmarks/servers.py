"""Processes under test: ``ollm serve`` on a free port, and how busy the machine is."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.config import HEALTH_TIMEOUT_S, MAX_RUNNING, QUIET_CORES, THREADS


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class Server:
    """A running ``ollm serve`` subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def wait_healthy(server: Server, timeout_s: float) -> None:
    """Poll ``GET /health`` until it answers 200; raise if the server dies or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"ollm exited with code {server.process.returncode}:\n{log_tail(server.log_path)}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.base_url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"ollm not healthy after {timeout_s:.0f} s:\n{log_tail(server.log_path)}")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def ollm_server(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``python -m ollm serve`` with OLLM_HOME in ``workdir`` (fresh the first time, the
    same data on a second call: a restart), plus ``env``; always stop it afterwards."""
    port = free_port()
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    log_path = workdir / "server.log"
    command = [
        sys.executable, "-m", "ollm", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--threads", str(THREADS), "--max-running", str(MAX_RUNNING),
    ]  # fmt: skip
    environment = {**os.environ, "OLLM_HOME": str(home), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_healthy(server, HEALTH_TIMEOUT_S)
        yield server
    finally:
        stop_process(process)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process, from /proc (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(server_pid: int | None) -> float:
    """CPU seconds used by this benchmark: itself, waited-for children, and the server."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime + cpu_seconds(server_pid)


class LoadMeter:
    """Measures how many cores *other* processes kept busy during a block of work.

    The machine is shared; a run during which others used a core is not comparable, so
    every run records this and the report shows it.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self._start = (time.perf_counter(), system_busy_seconds(), own_cpu_seconds(server_pid))

    def foreign_cores(self) -> float:
        """Average cores used by other processes since the meter started."""
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        busy = system_busy_seconds() - busy0
        own = own_cpu_seconds(self.server_pid) - own0
        return max(0.0, busy - own) / wall if wall > 0 else 0.0


def wait_for_quiet(server_pid: int | None, timeout_s: float) -> dict[str, float | None]:
    """Wait (up to ``timeout_s``) until other processes use < QUIET_CORES for 2 s running."""
    started = time.perf_counter()
    quiet_seconds = 0
    load = None
    while time.perf_counter() - started < timeout_s:
        meter = LoadMeter(server_pid)
        time.sleep(1.0)
        load = meter.foreign_cores()
        quiet_seconds = quiet_seconds + 1 if load < QUIET_CORES else 0
        if quiet_seconds >= 2:
            break
    return {"waited_s": time.perf_counter() - started, "foreign_cores_before": load}
