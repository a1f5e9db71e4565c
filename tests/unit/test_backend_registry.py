"""The backend registry: a model's format picks its backend, imported only when first used."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_model_gguf_info import write_gguf

from ollm.backends.fake import FakeBackend
from ollm.backends.registry import (
    BackendFactory,
    BackendRegistry,
    default_registry,
    detect_format,
)
from ollm.errors import ModelLoadError
from ollm.services.models.registry import ModelEntry
from ollm.services.models.service import ModelService
from ollm.settings import EngineSettings, Settings

# A backend module as a plugin would ship it: a class with load() and a runtime_version().
PLUGIN_MODULE = """
from ollm.backends.fake import FakeBackend

LOADED = []


class Backend:
    @staticmethod
    def load(path, engine):
        LOADED.append(path)
        return FakeBackend(num_sequences=engine.max_running)


def runtime_version():
    return "fake-runtime 1"
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BackendFactory:
    (tmp_path / "ollm_test_plugin_backend.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ollm_test_plugin_backend", raising=False)
    return BackendFactory("fake", ("gguf",), "ollm_test_plugin_backend:Backend")


def test_format_comes_from_the_file_bytes_not_its_name(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "named.bin")
    lying = tmp_path / "lying.gguf"
    lying.write_bytes(b"PK\x03\x04 not a gguf")
    assert detect_format(gguf) == "gguf"
    assert detect_format(lying) == "unknown"
    assert detect_format(tmp_path / "missing.gguf") == "unknown"


def test_the_default_registry_serves_gguf_with_llama_cpp_without_importing_it() -> None:
    registry = default_registry()
    assert registry.formats() == ["gguf"]
    assert registry.for_format("gguf").name == "llama.cpp"


def test_an_unknown_format_is_a_model_load_error_naming_the_known_ones(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelLoadError, match=r"no backend loads 'unknown'.*known formats: gguf"):
        default_registry().load(junk, EngineSettings())


def test_a_format_is_served_once_unless_replaced(plugin: BackendFactory) -> None:
    registry = default_registry()
    with pytest.raises(ValueError, match=r"already served by llama\.cpp"):
        registry.register(plugin)
    registry.register(plugin, replace=True)
    assert registry.for_format("gguf") is plugin


def test_the_factory_module_is_imported_on_first_load_only(
    plugin: BackendFactory, tmp_path: Path
) -> None:
    registry = BackendRegistry((plugin,))
    assert "ollm_test_plugin_backend" not in sys.modules
    path = write_gguf(tmp_path / "m.gguf")
    backend = registry.load(path, EngineSettings(max_running=3))
    assert isinstance(backend, FakeBackend) and backend.num_sequences == 3
    assert [path] == sys.modules["ollm_test_plugin_backend"].LOADED
    assert plugin.runtime() == "fake-runtime 1"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_model_service_loads_through_its_registry(
    plugin: BackendFactory, tmp_path: Path, anyio_backend: str
) -> None:
    weights = write_gguf(tmp_path / "m.gguf")
    settings = Settings(home=tmp_path / "home", kv_disk_budget=0)
    service = ModelService(
        settings, entries=[ModelEntry("fake:1", weights)], backends=BackendRegistry((plugin,))
    )
    try:
        loaded = await service.get("fake:1")
        assert isinstance(loaded.backend, FakeBackend)
        assert [weights] == sys.modules["ollm_test_plugin_backend"].LOADED
    finally:
        await service.close()


def test_snapshots_are_tied_to_the_kv_cache_type(plugin: BackendFactory, tmp_path: Path) -> None:
    """A KV state saved from a q8_0 cache means nothing to an f16 one: the runtime that
    snapshots record names the cache type when it is not the default."""

    def runtime(kv_cache_type: str) -> str:
        engine = EngineSettings(kv_cache_type=kv_cache_type)  # type: ignore[arg-type]
        settings = Settings(home=tmp_path / kv_cache_type, engine=engine)
        return ModelService(settings, backends=BackendRegistry((plugin,)))._runtime()

    assert runtime("f16") == "fake-runtime 1"
    assert runtime("q8_0") == "fake-runtime 1; kv q8_0"
