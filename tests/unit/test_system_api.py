"""``/ready``, ``/metrics`` access and ``/api/v1/system`` over the fake backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_v1_harness import cheap_password_hashing, signup, v1_app
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_ready_when_model_loadable_and_database_up(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        response = await h.client.get("/ready")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready"
        assert body["checks"]["database"]["status"] == "ok"
        assert body["checks"]["default_model"] == {
            "status": "ok",
            "detail": "fake:1 loadable (not loaded)",
        }
        await h.client.post("/api/generate", json={"model": "fake:1"})  # loads it
        detail = (await h.client.get("/ready")).json()["checks"]["default_model"]["detail"]
        assert detail == "fake:1 loaded"


async def test_not_ready_without_the_default_model(tmp_path: Path) -> None:
    async with v1_app(tmp_path, default_model="missing:1") as h:
        response = await h.client.get("/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "not ready"
        assert body["failed"] == ["default_model"]
        assert "missing:1" in body["checks"]["default_model"]["detail"]


async def test_not_ready_when_the_database_is_unreachable(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        good = h.app.state.database
        h.app.state.database = create_async_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
        )
        try:
            response = await h.client.get("/ready")
        finally:
            await h.app.state.database.dispose()
            h.app.state.database = good
        assert response.status_code == 503
        assert response.json()["failed"] == ["database"]
        assert "not reachable" in response.json()["checks"]["database"]["detail"]


async def test_system_info_shape(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        await h.client.post("/api/generate", json={"model": "fake:1"})
        response = await h.client.get("/api/v1/system")
        assert response.status_code == 200, response.text
        info = response.json()
    assert info["cpu"]["logical_cores"] > 0
    assert info["cpu"]["model"]
    assert info["memory"]["total_bytes"] >= info["memory"]["available_bytes"] > 0
    assert info["memory"]["process_rss_bytes"] > 0
    assert isinstance(info["gpus"], list)  # nvidia-smi, if any (see test_gpu_placement.py)
    assert info["backend"]["name"] == "llama.cpp"
    assert info["backend"]["device"] == "cpu"
    assert set(info["versions"]) >= {"ollm", "python", "llama-cpp-python", "fastapi"}
    assert info["default_model"] == "fake:1"
    [model] = info["loaded_models"]
    assert model["id"] == "fake:1"
    assert model["memory_bytes"] > 0
    assert model["running"] == 0 and model["max_running"] == 4
    assert info["uptime_seconds"] >= 0


async def test_auth_protects_system_but_not_probes_or_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cheap_password_hashing(monkeypatch)
    async with v1_app(tmp_path, auth=True) as h:
        assert (await h.client.get("/api/v1/system")).status_code == 401
        for path in ("/health", "/ready", "/metrics"):
            assert (await h.client.get(path)).status_code == 200, path
        await signup(h.client, "alice")
        assert (await h.client.get("/api/v1/system")).status_code == 200
