"""The model manager with real models: pulls from a local fake Hub, several models
resident at once, LRU eviction past the limit, and the GGUF reader on real files.

No test reaches the internet: huggingface_hub is pointed at :class:`hf_mirror.HubMirror`
on loopback, serving the bundled SmolLM2 file.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run_server
from gguf import GGUFReader
from hf_mirror import HubMirror, MirrorFile, file_sha256, smollm2_gguf

from ollm.backends.registry import default_registry
from ollm.chat.messages import ChatMessage
from ollm.errors import DigestMismatchError, InvalidModelNameError, ModelNotFoundError, PullError
from ollm.sampling import SamplingParams
from ollm.services.inference.completions import CompletionService
from ollm.services.models import bundled
from ollm.services.models.gguf_info import read_gguf_info
from ollm.services.models.service import ModelService
from ollm.settings import EngineSettings, Settings

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timeout(180)]

REPO = "TestOrg/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
PULL_NAME = f"hf.co/{REPO}:q4_1"
LOCAL_NAME = "hf.co/testorg/smollm2-135m-instruct-gguf:q4_1"
ENGINE = EngineSettings(max_running=2, max_waiting=4, context_per_sequence=512, threads=2)
GREEDY = SamplingParams(temperature=0.0, max_tokens=8)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def smollm2() -> tuple[Path, str]:
    path = smollm2_gguf()
    return path, file_sha256(path)


@pytest.fixture
def hub(
    smollm2: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubMirror]:
    """The fake Hub, with the environment pointing huggingface_hub at it (and only it)."""
    path, sha = smollm2
    other = tmp_path / "other.bin"
    other.write_bytes(b"never downloaded")
    with HubMirror() as mirror:
        mirror.add_file(REPO, FILE, path, sha256=sha)
        mirror.add_file(REPO, "SmolLM2-135M-Instruct-F16.gguf", other)
        mirror.add_file(REPO, "README.md", other, lfs=False)
        monkeypatch.setenv("HF_ENDPOINT", mirror.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("OLLM_HF_ENDPOINT", raising=False)
        # huggingface_hub read these at import time, before the test could set them.
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
        monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "token"))
        yield mirror


@pytest.fixture
async def service(tmp_path: Path, hub: HubMirror) -> AsyncIterator[ModelService]:
    settings = Settings(home=tmp_path / "home", engine=ENGINE)  # HF_ENDPOINT from the env
    assert settings.hf_endpoint == hub.url
    models = ModelService(settings, bundled_models=())
    yield models
    await models.close()


def mirror_file(hub: HubMirror) -> MirrorFile:
    return hub.repos[REPO][FILE]


async def pull_all(models: ModelService, name: str) -> list[dict[str, Any]]:
    return [event async for event in await models.pull(name)]


def blobs(models: ModelService) -> list[Path]:
    return sorted((models.settings.models_dir / "blobs").glob("*"))


# -- pull ----------------------------------------------------------------------------------


async def test_pull_downloads_verifies_and_registers(
    service: ModelService, hub: HubMirror, smollm2: tuple[Path, str]
) -> None:
    path, sha = smollm2
    events = await pull_all(service, PULL_NAME)

    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    downloads = [e for e in events if e["status"].startswith("downloading")]
    assert len(downloads) >= 3
    for event in downloads:
        assert event["status"] == f"downloading sha256:{sha}"
        assert event["digest"] == f"sha256:{sha}"
        assert event["total"] == path.stat().st_size
    completed = [e["completed"] for e in downloads]
    assert completed == sorted(completed) and completed[-1] == path.stat().st_size

    entry = service.resolve(PULL_NAME)  # the name it was pulled as finds it
    assert entry.model_id == LOCAL_NAME
    info = service.info(LOCAL_NAME)
    assert (info.family, info.quantization, info.parameter_size) == ("llama", "Q4_1", "135M")
    assert info.digest == sha and info.size_bytes == path.stat().st_size
    assert blobs(service) == [service.settings.models_dir / "blobs" / f"sha256-{sha}"]
    assert [r.method for r in hub.requests if "resolve" in r.path] == ["HEAD", "GET"]
    assert hub.gets(FILE)[0].range is None


async def test_download_interrupted_half_way_resumes(
    service: ModelService, hub: HubMirror, smollm2: tuple[Path, str]
) -> None:
    path, sha = smollm2
    size = path.stat().st_size
    mirror_file(hub).drop_after = size // 2  # hang up half-way through, once

    events = await pull_all(service, PULL_NAME)

    assert events[-1] == {"status": "success"}
    first, second = hub.gets(FILE)
    assert first.range is None
    resumed_at = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= size // 2  # it asked only for the rest
    assert service.info(LOCAL_NAME).digest == sha
    assert hashlib.sha256(service.resolve(LOCAL_NAME).path.read_bytes()).hexdigest() == sha


async def test_a_later_pull_resumes_a_partial_download(
    service: ModelService, hub: HubMirror, smollm2: tuple[Path, str]
) -> None:
    path, sha = smollm2
    third = path.stat().st_size // 3
    partial = service.settings.models_dir / "blobs" / f"sha256-{sha}.partial"
    partial.parent.mkdir(parents=True)
    with path.open("rb") as source:
        partial.write_bytes(source.read(third))

    events = await pull_all(service, PULL_NAME)

    downloads = [e for e in events if e["status"].startswith("downloading")]
    assert downloads[0]["completed"] == third  # progress starts where it left off
    assert [r.range for r in hub.gets(FILE)] == [f"bytes={third}-"]
    assert not partial.exists()
    assert service.info(LOCAL_NAME).digest == sha


async def test_a_cancelled_pull_leaves_a_resumable_partial(
    service: ModelService, hub: HubMirror, smollm2: tuple[Path, str]
) -> None:
    _, sha = smollm2
    mirror_file(hub).delay = 0.02  # about 2 s for the whole file
    events = await service.pull(PULL_NAME)
    async for event in events:
        if event.get("completed", 0) > 0:
            break
    await events.aclose()  # the client went away

    mirror_file(hub).delay = 0.0
    after = await pull_all(service, PULL_NAME)  # waits for the first download to stop

    assert after[-1] == {"status": "success"}
    ranges = [r.range for r in hub.gets(FILE)]
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1] != "bytes=0-"
    assert service.info(LOCAL_NAME).digest == sha


async def test_checksum_mismatch_is_refused(
    service: ModelService, hub: HubMirror, smollm2: tuple[Path, str]
) -> None:
    path, _ = smollm2
    hub.add_file(REPO, FILE, path, sha256="0" * 64)  # the hub announces another digest
    seen: list[str] = []
    with pytest.raises(DigestMismatchError) as caught:
        async for event in await service.pull(PULL_NAME):
            seen.append(event["status"])
    assert caught.value.status_code == 502
    assert seen[-1] == "verifying sha256 digest"
    assert "success" not in seen
    assert blobs(service) == []  # nothing kept: no blob, no partial
    assert service.list_models() == []


async def test_pull_errors_before_any_progress(service: ModelService, hub: HubMirror) -> None:
    with pytest.raises(ModelNotFoundError):
        await service.pull("hf.co/TestOrg/no-such-repo")
    with pytest.raises(ModelNotFoundError, match="Q4_1"):
        await service.pull(f"hf.co/{REPO}:Q5_K_M")  # the message lists what exists
    with pytest.raises(ModelNotFoundError):
        await service.pull(f"{REPO}:missing.gguf")
    for bad in ("../../etc/passwd", "llama3", "evil.example/a/b", "hf.co/a/b:c\x00"):
        with pytest.raises(InvalidModelNameError):
            await service.pull(bad)
    assert service.list_models() == []


async def test_unreachable_hub_is_a_pull_error(tmp_path: Path, hub: HubMirror) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = Settings(home=tmp_path / "h", hf_endpoint=f"http://127.0.0.1:{closed_port}")
    models = ModelService(settings, bundled_models=())
    try:
        with pytest.raises(PullError):
            await models.pull(PULL_NAME)
    finally:
        await models.close()


async def test_one_file_under_two_names_is_downloaded_once(
    service: ModelService, hub: HubMirror, smollm2: tuple[Path, str]
) -> None:
    _, sha = smollm2
    await pull_all(service, PULL_NAME)
    events = await pull_all(service, f"{REPO}:{FILE}")
    assert events[-1] == {"status": "success"}
    assert len(hub.gets(FILE)) == 1  # the second pull found the verified blob
    names = sorted(e.model_id for e in service.list_models())
    assert names == [
        LOCAL_NAME,
        "testorg/smollm2-135m-instruct-gguf:smollm2-135m-instruct-q4_1.gguf",
    ]
    assert {service.info(n).digest for n in names} == {sha}

    await service.delete(LOCAL_NAME)
    assert len(blobs(service)) == 1  # still named once
    await service.delete(names[1])
    assert blobs(service) == []


async def test_a_pulled_model_loads_and_chats(service: ModelService, hub: HubMirror) -> None:
    await pull_all(service, PULL_NAME)
    completions = CompletionService(service)
    messages = [ChatMessage(role="user", content="What is the capital of France?")]
    generation = await completions.chat(model=PULL_NAME, messages=messages, params=GREEDY)
    text = "".join([delta.text async for delta in generation.stream])
    assert text.strip()
    assert [m.model_id for m in service.loaded_models()] == [LOCAL_NAME]


# -- several real models ---------------------------------------------------------------------


@pytest.fixture
def bundled_home(tmp_path: Path, ollm_home: Path) -> Path:
    """A fresh home that reuses the session's assembled Gemma file (not 250 MB again)."""
    gemma = bundled.locate(bundled.GEMMA3, ollm_home / "models")
    assert gemma is not None, "the Gemma 3 packages are not installed (make install)"
    home = tmp_path / "home"
    (home / "models" / "bundled").mkdir(parents=True)
    (home / "models" / "bundled" / gemma.name).symlink_to(gemma)
    return home


async def stream_text(completions: CompletionService, model: str) -> str:
    generation = await completions.complete(model=model, prompt="Once upon a time", params=GREEDY)
    return "".join([delta.text async for delta in generation.stream])


async def test_two_models_at_once_and_a_third_evicts_the_lru(bundled_home: Path) -> None:
    settings = Settings(home=bundled_home, engine=ENGINE, max_loaded_models=2)
    models = ModelService(settings)
    completions = CompletionService(models)
    try:
        # Both stream at the same time, each from its own engine.
        small = await completions.complete(model="smollm2:135m", prompt="Hi", params=GREEDY)
        gemma = await completions.complete(model="gemma3:270m", prompt="Hi", params=GREEDY)
        running = {m.model_id: m.in_flight for m in models.loaded_models()}
        assert running == {"smollm2:135m": 1, "gemma3:270m": 1}
        texts = await asyncio.gather(
            *(asyncio.ensure_future(_drain(g.stream)) for g in (small, gemma))
        )
        assert all(texts)

        await models.copy("smollm2:135m", "smollm2-copy")  # a third model, no new file
        assert await stream_text(completions, "gemma3:270m")  # smollm2 is now the LRU one
        assert await stream_text(completions, "smollm2-copy")

        loaded = [m.model_id for m in models.loaded_models()]
        assert loaded == ["smollm2-copy:latest", "gemma3:270m"]
        assert all(m.size_bytes > m.entry.size_bytes for m in models.loaded_models())  # + KV
    finally:
        await models.close()


async def test_ten_concurrent_first_requests_load_the_real_model_once(tmp_path: Path) -> None:
    loads: list[Path] = []

    def counting_loader(path: Path, engine: EngineSettings) -> Any:
        loads.append(path)
        return default_registry().load(path, engine)

    engine = ENGINE.model_copy(update={"max_running": 4, "max_waiting": 16})
    settings = Settings(home=tmp_path / "home", engine=engine)
    models = ModelService(settings, loader=counting_loader, bundled_models=(bundled.SMOLLM2,))
    completions = CompletionService(models)
    try:
        texts = await asyncio.gather(*(stream_text(completions, "smollm2:135m") for _ in range(10)))
        assert len(loads) == 1
        assert all(texts)
        assert models.loaded_models()[0].in_flight == 0
    finally:
        await models.close()


async def _drain(stream: Any) -> str:
    return "".join([delta.text async for delta in stream])


def test_gguf_reader_agrees_with_the_gguf_package_on_a_real_model() -> None:
    path = smollm2_gguf()
    ours = read_gguf_info(path)
    theirs = GGUFReader(path)
    for key, field in theirs.fields.items():
        if not key.startswith("GGUF.") and key not in ours.skipped_arrays:
            assert ours.metadata[key] == pytest.approx(field.contents()), key
    assert ours.parameter_count == sum(int(t.n_elements) for t in theirs.tensors)
    assert ours.kv_bytes_per_cell() == 30 * 3 * (64 + 64) * 2  # layers x kv heads x dims x f16


def test_server_keeps_at_most_max_loaded_models(bundled_home: Path, tmp_path: Path) -> None:
    """Through a real ``ollm serve`` with OLLM_MAX_LOADED_MODELS=2: three models answer,
    and the least recently used idle one is unloaded to make room (seen in /api/ps)."""
    (bundled_home / "models" / "third.gguf").symlink_to(smollm2_gguf())  # a dropped-in file
    env = {
        "OLLM_MAX_LOADED_MODELS": "2",
        "OLLM_MAX_RUNNING": "2",
        "OLLM_CONTEXT_PER_SEQUENCE": "512",
        "OLLM_THREADS": "2",
        "OLLM_KEEP_ALIVE": "10m",
        "OLLM_PRELOAD_DEFAULT_MODEL": "false",
    }
    resident: list[set[str]] = []
    with run_server(bundled_home, tmp_path / "server.log", **env) as base_url:
        for model in ("smollm2:135m", "gemma3:270m", "third:latest"):
            body = {"model": model, "prompt": "Hello", "max_tokens": 4, "temperature": 0}
            response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=120)
            assert response.status_code == 200, response.text
            running = httpx.get(f"{base_url}/api/ps", timeout=10).json()["models"]
            resident.append({m["name"] for m in running})
        started = time.time()
        expiry = datetime.fromisoformat(running[0]["expires_at"]).timestamp()
    assert resident == [
        {"smollm2:135m"},
        {"smollm2:135m", "gemma3:270m"},
        {"gemma3:270m", "third:latest"},
    ]
    assert 9 * 60 < expiry - started <= 10 * 60 + 5  # OLLM_KEEP_ALIVE=10m
