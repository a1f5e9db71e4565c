"""Fixtures of the reliability suite: real servers under load, hostile input and abuse.

The servers come from ``run_server`` of ``tests/integration/conftest.py``, loaded by file
path (pytest's default import mode does not put that folder on ``sys.path`` when only this
suite runs). The crash test lives there too, and is not repeated here:
``tests/integration/test_crash_recovery.py`` SIGKILLs a server mid-stream, restarts it on the
same data and checks every committed message and the database's integrity.

Figures the tests measure are printed and appended to ``artifacts/summary.txt``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL = "smollm2:135m"


def _integration_conftest() -> ModuleType:
    path = Path(__file__).parent.parent / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ollm_integration_servers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_server = _integration_conftest().run_server


def report(name: str, figures: dict[str, object]) -> None:
    """Print ``figures`` (visible with ``-s`` or in a failure) and append them to the summary."""
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {name}: " + ", ".join(
        f"{key}={value}" for key, value in figures.items()
    )
    print(line)
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "summary.txt").open("a") as summary:
        summary.write(line + "\n")


def server_process(base_url: str) -> psutil.Process:
    """The ``ollm serve`` child of this test process listening at ``base_url``."""
    port = base_url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if "serve" in cmdline and port in cmdline:
            return child
    raise AssertionError(f"no server process for {base_url}")


def metric_total(base_url: str, name: str) -> float:
    """The sum over labels of one sample name (``..._count``, a gauge) in ``/metrics``."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, f"/metrics: {response.status_code}"
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


@pytest.fixture(scope="session")
def rel_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the suite's servers (bundled models assembled once)."""
    return tmp_path_factory.mktemp("ollm-rel-home")


# The load: 32 running + 100 waiting. With 4-token replies and 256-cell contexts
# it takes ~10 s on an idle 2-core box (a minute or more when other work shares the CPUs:
# each step's attention spans the whole KV cache). OLLM_REL_RUNNING / OLLM_REL_WAITING
# scale it down on a busy machine.
LOAD_RUNNING = int(os.environ.get("OLLM_REL_RUNNING", "32"))
LOAD_WAITING = int(os.environ.get("OLLM_REL_WAITING", "100"))


@pytest.fixture(scope="session")
def load_server(rel_home: Path) -> Iterator[str]:
    """LOAD_RUNNING slots and LOAD_WAITING waiting places, small contexts, 64 KiB bodies."""
    env = {
        "OLLM_MAX_RUNNING": str(LOAD_RUNNING),
        "OLLM_MAX_WAITING": str(LOAD_WAITING),
        "OLLM_CONTEXT_PER_SEQUENCE": "256",
        "OLLM_THREADS": "2",
        "OLLM_MAX_BODY_SIZE": "64K",
    }
    with run_server(rel_home / "load", rel_home / "load-server.log", **env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def storm_server(rel_home: Path) -> Iterator[str]:
    """Room for 50 streams: 8 decoding, 48 waiting."""
    env = {
        "OLLM_MAX_RUNNING": "8",
        "OLLM_MAX_WAITING": "48",
        "OLLM_CONTEXT_PER_SEQUENCE": "512",
        "OLLM_THREADS": "2",
    }
    with run_server(rel_home / "storm", rel_home / "storm-server.log", **env) as base_url:
        yield base_url


# What the suite's small servers share: two slots of 512 cells on two threads.
SMALL_SERVER = {"OLLM_MAX_RUNNING": "2", "OLLM_CONTEXT_PER_SEQUENCE": "512", "OLLM_THREADS": "2"}


def small_server(rel_home: Path, name: str, **env: str) -> Iterator[str]:
    """A small server (:data:`SMALL_SERVER`) with its own data directory ``name`` and
    ``env`` on top; yields its URL (use with ``yield from`` in a fixture)."""
    log_path = rel_home / f"{name}-server.log"
    with run_server(rel_home / name, log_path, **{**SMALL_SERVER, **env}) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def secure_server(rel_home: Path) -> Iterator[str]:
    """Auth on, 30 requests a minute per client, one allowed CORS origin."""
    yield from small_server(
        rel_home,
        "secure",
        OLLM_AUTH="true",
        OLLM_RATE_LIMIT="30",
        OLLM_CORS_ORIGINS="https://ui.example.org",
    )
