"""A real ``ollm serve`` on loopback, for tests that talk to it like any client would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(log_path: Path, lines: int = 60) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def run_server(home: Path, log_path: Path, **env: str) -> Iterator[str]:
    """Start ``python -m ollm serve`` with ``OLLM_HOME=home`` plus ``env``; yield its URL.

    Output goes to ``log_path`` (a pipe nobody reads could fill and stall the server).
    """
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OLLM_")}
    environment.update({"OLLM_HOME": str(home), **env})
    command = [sys.executable, "-m", "ollm", "serve", "--host", "127.0.0.1", "--port", str(port)]
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(process, base_url, log_path)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"ollm serve exited with {process.returncode}:\n{_log_tail(log_path)}",
                pytrace=False,
            )
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"ollm serve not healthy after {STARTUP_TIMEOUT:.0f} s:\n{_log_tail(log_path)}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def ollm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory per session, so bundled models are assembled only once."""
    return tmp_path_factory.mktemp("ollm-home")


@pytest.fixture(scope="session")
def live_server(ollm_home: Path) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a real server with the bundled models."""
    log_path = ollm_home.parent / "live-server.log"
    env = {"OLLM_MAX_RUNNING": "4", "OLLM_CONTEXT_PER_SEQUENCE": "2048", "OLLM_THREADS": "2"}
    with run_server(ollm_home, log_path, **env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def tight_server(ollm_home: Path) -> Iterator[str]:
    """A server with one slot and no waiting room: one leaked generation means a 429.

    Its long context makes a generation nobody aborts run for minutes.
    """
    env = {
        "OLLM_MAX_RUNNING": "1",
        "OLLM_MAX_WAITING": "0",
        "OLLM_CONTEXT_PER_SEQUENCE": "8192",
        "OLLM_THREADS": "2",
    }
    with run_server(ollm_home, ollm_home.parent / "tight-server.log", **env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def one_slot_server(ollm_home: Path) -> Iterator[str]:
    """A server with one slot and room to wait: admission order is easy to observe."""
    env = {
        "OLLM_MAX_RUNNING": "1",
        "OLLM_MAX_WAITING": "16",
        "OLLM_CONTEXT_PER_SEQUENCE": "1024",
        "OLLM_THREADS": "2",
    }
    with run_server(ollm_home, ollm_home.parent / "one-slot-server.log", **env) as base_url:
        yield base_url
