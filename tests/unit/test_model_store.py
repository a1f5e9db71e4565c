"""Registry and manifest: metadata from GGUF headers, digests, copy and delete."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_model_gguf_info import TEMPLATE, write_gguf

from ollm.backends.fake import FakeBackend
from ollm.errors import InvalidModelNameError, ModelNotFoundError, ModelProtectedError
from ollm.services.models.registry import ModelEntry, Registry, format_parameter_count
from ollm.services.models.service import ModelService
from ollm.settings import EngineSettings, Settings


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "models").mkdir()
    return Settings(home=tmp_path)


@pytest.fixture
def builtin(tmp_path: Path) -> ModelEntry:
    """A stand-in for a bundled model (a file outside the models directory)."""
    path = write_gguf(tmp_path / "site-packages.gguf", arch="gemma3", license_="gemma")
    return ModelEntry("builtin:1b", path, "bundled", bundled=True, origin="bundled")


@pytest.fixture
def registry(settings: Settings, builtin: ModelEntry) -> Registry:
    write_gguf(settings.models_dir / "Alpha.gguf")
    return Registry(settings, entries=[builtin])


def model_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.models_dir.rglob("*") if p.is_file() and p.suffix != ".json")


def test_lists_builtin_and_dropped_in_models(registry: Registry) -> None:
    assert sorted(registry.entries()) == ["alpha:latest", "builtin:1b"]


def test_info_is_read_from_the_file(registry: Registry, settings: Settings) -> None:
    info = registry.info(registry.resolve("alpha"))
    assert info.id == "alpha:latest"
    assert info.format == "gguf"
    assert (info.family, info.families, info.architecture) == ("llama", ["llama"], "llama")
    assert info.parameter_count == 100 * 8 + 8
    assert info.parameter_size == "808"
    assert info.quantization == "Q8_0"
    assert info.context_length == 256
    assert info.license == "mit"
    assert info.chat_template == TEMPLATE
    assert info.size_bytes == (settings.models_dir / "Alpha.gguf").stat().st_size
    assert info.digest == sha256(settings.models_dir / "Alpha.gguf")
    assert info.metadata["llama.block_count"] == 2
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert "tokenizer.chat_template" not in info.metadata  # reported on its own
    assert info.modified_at.tzinfo is not None


def test_parameter_sizes_read_like_model_cards() -> None:
    assert format_parameter_count(134_515_008) == "135M"
    assert format_parameter_count(268_098_176) == "268M"
    assert format_parameter_count(8_030_261_248) == "8.0B"
    assert format_parameter_count(1_235_814_400) == "1.2B"


def test_digest_is_cached_on_disk(
    registry: Registry, settings: Settings, builtin: ModelEntry, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = registry.resolve("alpha:latest").digest
    cache = json.loads((settings.home / "cache" / "digests.json").read_text())
    assert expected in {entry["sha256"] for entry in cache.values()}

    def no_hashing(_path: Path) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr("ollm.services.models.digests.sha256_file", no_hashing)
    fresh = Registry(settings, entries=[builtin])
    assert fresh.resolve("alpha:latest").digest == expected


def test_digest_cache_notices_a_changed_file(registry: Registry, settings: Settings) -> None:
    path = settings.models_dir / "Alpha.gguf"
    before = registry.resolve("alpha").digest
    write_gguf(path, license_="apache-2.0")
    assert registry.resolve("alpha").digest == sha256(path) != before


def test_a_dropped_in_file_appears_without_restart(registry: Registry, settings: Settings) -> None:
    write_gguf(settings.models_dir / "beta.gguf")
    assert registry.resolve("beta").model_id == "beta:latest"


def test_resolve_is_case_insensitive_and_bare_names_find_the_only_tag(registry: Registry) -> None:
    assert registry.resolve("ALPHA:Latest").model_id == "alpha:latest"
    assert registry.resolve("builtin").model_id == "builtin:1b"
    for name in ("builtin:2b", "../alpha", "", "alpha\x00"):
        with pytest.raises(ModelNotFoundError):
            registry.resolve(name)


def test_copy_adds_a_name_not_a_file(registry: Registry, settings: Settings) -> None:
    before = model_files(settings)
    copied = registry.copy(registry.resolve("alpha"), "Team/Alpha-Copy:v1")
    assert copied.model_id == "team/alpha-copy:v1"
    assert copied.origin == "copy"
    assert copied.path.resolve() == (settings.models_dir / "Alpha.gguf").resolve()
    assert model_files(settings) == before  # no bytes duplicated
    manifest = json.loads((settings.models_dir / "manifest.json").read_text())
    assert manifest["models"]["team/alpha-copy:v1"]["file"] == "Alpha.gguf"
    assert copied.digest == registry.resolve("alpha").digest


def test_copy_of_a_builtin_model_points_at_its_file(
    registry: Registry, builtin: ModelEntry
) -> None:
    copied = registry.copy(registry.resolve("builtin:1b"), "mine")
    assert copied.path.resolve() == builtin.path.resolve()
    assert registry.info(copied).family == "gemma3"


def test_copy_replaces_an_existing_copy(registry: Registry) -> None:
    registry.copy(registry.resolve("alpha"), "x")
    registry.copy(registry.resolve("builtin:1b"), "x")
    assert registry.info(registry.resolve("x")).family == "gemma3"


def test_builtin_models_cannot_be_overwritten_or_deleted(registry: Registry) -> None:
    with pytest.raises(ModelProtectedError) as caught:
        registry.copy(registry.resolve("alpha"), "builtin:1b")
    assert caught.value.status_code == 400
    with pytest.raises(ModelProtectedError):
        registry.delete(registry.resolve("builtin:1b"))
    assert registry.resolve("builtin:1b").bundled


@pytest.mark.parametrize(
    "destination", ["../evil", "/abs", "a\\b", "\uff45\uff56\uff49\uff4c", "a:b:c"]
)
def test_copy_refuses_invalid_destinations(registry: Registry, destination: str) -> None:
    with pytest.raises(InvalidModelNameError):
        registry.copy(registry.resolve("alpha"), destination)


def test_deleting_a_copy_keeps_the_original(registry: Registry, settings: Settings) -> None:
    registry.copy(registry.resolve("alpha"), "second")
    registry.delete(registry.resolve("second"))
    assert "second:latest" not in registry.entries()
    assert (settings.models_dir / "Alpha.gguf").is_file()


def test_deleting_a_dropped_in_file_that_has_copies_moves_it(
    registry: Registry, settings: Settings
) -> None:
    digest = registry.resolve("alpha").digest
    registry.copy(registry.resolve("alpha"), "second")
    registry.delete(registry.resolve("alpha"))
    assert "alpha:latest" not in registry.entries()
    assert not (settings.models_dir / "Alpha.gguf").exists()
    second = registry.resolve("second")
    assert second.path == settings.models_dir / "blobs" / f"sha256-{digest}"
    assert second.digest == digest
    registry.delete(second)
    assert model_files(settings) == []


def test_deleting_the_last_name_of_a_blob_removes_it(
    registry: Registry, settings: Settings
) -> None:
    source = write_gguf(settings.home / "download.gguf")
    digest = sha256(source)
    blob = settings.models_dir / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir()
    source.rename(blob)
    registry.add("hf.co/org/repo:q8_0", blob, digest=digest, source="hf.co/org/repo/x.gguf")
    registry.copy(registry.resolve("hf.co/org/repo:q8_0"), "short")
    assert registry.resolve("hf.co/org/repo:q8_0").origin == "pulled"
    registry.delete(registry.resolve("hf.co/org/repo:q8_0"))
    assert blob.is_file()  # "short" still uses it
    registry.delete(registry.resolve("short"))
    assert not blob.exists()


def test_tampered_manifest_entries_are_ignored(registry: Registry, settings: Settings) -> None:
    outside = write_gguf(settings.home / "outside.gguf")
    manifest = {
        "version": 1,
        "models": {
            "good:1": {"file": "Alpha.gguf"},
            "up:1": {"file": "../outside.gguf"},
            "abs:1": {"file": str(outside)},
            "../evil:1": {"file": "Alpha.gguf"},
            "builtin:1b": {"file": "Alpha.gguf"},  # may not shadow a built-in name
            "gone:1": {"file": "blobs/missing"},
            "junk:1": {"unexpected": True},
        },
    }
    (settings.models_dir / "manifest.json").write_text(json.dumps(manifest))
    entries = registry.entries()
    assert sorted(entries) == ["alpha:latest", "builtin:1b", "good:1"]
    assert entries["builtin:1b"].bundled


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_service_delete_unloads_and_forgets(settings: Settings, anyio_backend: str) -> None:
    write_gguf(settings.models_dir / "alpha.gguf")
    engine = EngineSettings(max_running=2, context_per_sequence=256, threads=1)
    config = Settings(home=settings.home, engine=engine)

    def loader(_path: Path, eng: EngineSettings) -> FakeBackend:
        return FakeBackend(num_sequences=eng.max_running, context_per_sequence=256)

    service = ModelService(config, loader=loader, bundled_models=())
    try:
        await service.copy("alpha", "beta")
        await service.get("alpha")
        await service.delete("alpha")
        assert service.loaded_models() == []
        assert [e.model_id for e in service.list_models()] == ["beta:latest"]
        with pytest.raises(ModelNotFoundError):
            await service.delete("alpha")
        with pytest.raises(InvalidModelNameError):
            await service.copy("beta", "../x")
    finally:
        await service.close()


@pytest.fixture
async def fake_service(settings: Settings) -> AsyncIterator[ModelService]:
    write_gguf(settings.models_dir / "alpha.gguf", license_="alpha-license")
    write_gguf(settings.models_dir / "beta.gguf", license_="beta-license")
    engine = EngineSettings(max_running=2, context_per_sequence=256, threads=1)

    def loader(_path: Path, eng: EngineSettings) -> FakeBackend:
        return FakeBackend(num_sequences=eng.max_running, context_per_sequence=256)

    service = ModelService(
        Settings(home=settings.home, engine=engine), loader=loader, bundled_models=()
    )
    yield service
    await service.close()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_overwritten_name_reloads_after_its_streams(
    fake_service: ModelService, settings: Settings, anyio_backend: str
) -> None:
    await fake_service.copy("alpha", "x")
    held = await fake_service.acquire("x")
    assert held.entry.path.name == "alpha.gguf"
    await fake_service.copy("beta", "x")  # "x" now names another file
    again = await fake_service.acquire("x")
    assert again is held  # running work finishes on the old file...
    fake_service.release(held)
    fake_service.release(again)
    assert fake_service.loaded_models() == []  # ...which then unloads
    fresh = await fake_service.get("x")
    assert fresh.entry.path.name == "beta.gguf"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_deleted_model_still_running_is_described(
    fake_service: ModelService, settings: Settings, anyio_backend: str
) -> None:
    held = await fake_service.acquire("alpha")
    await fake_service.delete("alpha")
    assert "alpha:latest" not in [e.model_id for e in fake_service.list_models()]
    assert [m.model_id for m in fake_service.loaded_models()] == ["alpha:latest"]
    assert fake_service.info("alpha:latest").id == "alpha:latest"  # for /api/ps
    fake_service.release(held)
    assert fake_service.loaded_models() == []
