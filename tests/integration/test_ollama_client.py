"""The official ``ollama`` client, unchanged, against a real server and the bundled models.

Greedy decoding throughout; the assertions are about properties (done reasons, counts,
durations, what is listed and loaded), never about the prose.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import ollama
import pytest
from conftest import run_server
from hf_mirror import HubMirror, smollm2_gguf

from ollm.services.models import bundled

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHAT_MODEL = "smollm2:135m"
BASE_MODEL = "gemma3:270m"
COPY_NAME = "my-smollm:copy"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
GREEDY = {"temperature": 0, "num_predict": 32}
HUB_REPO = "TestOrg/SmolLM2-135M-Instruct-GGUF"
HUB_FILE = "SmolLM2-135M-Instruct-Q4_1.gguf"
PULL_NAME = f"hf.co/{HUB_REPO}:Q4_1"
PULLED = "hf.co/testorg/smollm2-135m-instruct-gguf:q4_1"


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=live_server) as c:
        yield c


def assert_final_stats(response: ollama.ChatResponse | ollama.GenerateResponse) -> None:
    """The counts and nanosecond durations Ollama reports on the final object."""
    assert response.done is True
    assert response.done_reason in ("stop", "length")
    assert response.prompt_eval_count and response.prompt_eval_count > 5
    assert response.eval_count and 0 < response.eval_count <= GREEDY["num_predict"]
    assert response.total_duration and response.total_duration > 1_000_000  # > 1 ms, in ns
    assert response.load_duration is not None and response.load_duration >= 0
    assert response.prompt_eval_duration and response.prompt_eval_duration > 0
    assert response.eval_duration and response.eval_duration > 0
    assert response.total_duration >= response.prompt_eval_duration + response.eval_duration
    assert response.created_at and datetime.fromisoformat(response.created_at)


def names(client: ollama.Client) -> list[str]:
    return [model.model for model in client.list().models if model.model]


def test_root_probe_and_version(live_server: str) -> None:
    assert httpx.get(live_server).text == "Ollama is running"
    assert httpx.head(live_server).status_code == 200
    version = httpx.get(f"{live_server}/api/version").json()["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version)


def test_list(client: ollama.Client) -> None:
    models = {model.model: model for model in client.list().models}
    assert {CHAT_MODEL, BASE_MODEL} <= set(models)
    smollm = models[CHAT_MODEL]
    assert smollm.size and smollm.size > 10_000_000
    assert smollm.digest and re.fullmatch(r"[0-9a-f]{64}", smollm.digest)
    assert smollm.modified_at and smollm.modified_at.tzinfo is not None
    details = smollm.details
    assert details is not None
    assert details.format == "gguf"
    assert details.family == "llama"
    assert details.parameter_size and details.quantization_level
    assert models[BASE_MODEL].details and models[BASE_MODEL].details.family.startswith("gemma")


def test_show(client: ollama.Client) -> None:
    shown = client.show(CHAT_MODEL)
    assert shown.details and shown.details.family == "llama"
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] > 0
    assert shown.template and "im_start" in shown.template
    assert shown.capabilities and "completion" in shown.capabilities
    assert shown.modified_at is not None


def test_chat(client: ollama.Client) -> None:
    response = client.chat(model=CHAT_MODEL, messages=QUESTION, options=GREEDY)
    assert response.model == CHAT_MODEL
    assert response.message.role == "assistant"
    assert response.message.content and response.message.content.strip()
    assert_final_stats(response)


def test_streamed_chat_matches_the_unstreamed_one(client: ollama.Client) -> None:
    whole = client.chat(model=CHAT_MODEL, messages=QUESTION, options=GREEDY)
    chunks = list(client.chat(model=CHAT_MODEL, messages=QUESTION, options=GREEDY, stream=True))
    assert len(chunks) >= 4
    assert all(not chunk.done for chunk in chunks[:-1])
    assert chunks[-1].message.content == ""
    assert_final_stats(chunks[-1])
    text = "".join(chunk.message.content or "" for chunk in chunks)
    assert text == whole.message.content  # greedy: the same reply
    assert chunks[-1].eval_count == whole.eval_count


def test_num_predict_gives_length(client: ollama.Client) -> None:
    options = {"temperature": 0, "num_predict": 3}
    response = client.chat(model=CHAT_MODEL, messages=QUESTION, options=options)
    assert response.done_reason == "length"
    assert response.eval_count == 3


def test_stop_option(client: ollama.Client) -> None:
    whole = client.chat(model=CHAT_MODEL, messages=QUESTION, options=GREEDY).message.content
    assert whole and len(whole) > 4
    stop = whole[2:5]
    options = {**GREEDY, "stop": [stop]}
    response = client.chat(model=CHAT_MODEL, messages=QUESTION, options=options)
    assert response.done_reason == "stop"
    assert stop not in (response.message.content or "")


def test_generate(client: ollama.Client) -> None:
    response = client.generate(model=CHAT_MODEL, prompt="Why is the sky blue?", options=GREEDY)
    assert response.response and response.response.strip()
    assert_final_stats(response)
    prompt = "The capital of France is"
    raw = client.generate(model=BASE_MODEL, prompt=prompt, raw=True, options=GREEDY)
    assert raw.response and raw.model == BASE_MODEL
    assert raw.prompt_eval_count and raw.prompt_eval_count < 10  # no template around it
    pieces = list(client.generate(model=CHAT_MODEL, prompt="Hi", options=GREEDY, stream=True))
    assert pieces[-1].done and not any(p.done for p in pieces[:-1])
    assert "".join(p.response or "" for p in pieces).strip()


def test_async_client_streams_concurrently(live_server: str) -> None:
    async def one(client: ollama.AsyncClient, colour: str) -> str:
        messages = [{"role": "user", "content": f"Say something about {colour}."}]
        parts = []
        stream = await client.chat(model=CHAT_MODEL, messages=messages, options=GREEDY, stream=True)
        async for chunk in stream:
            parts.append(chunk.message.content or "")
            if chunk.done:
                assert chunk.done_reason in ("stop", "length")
        return "".join(parts)

    async def main() -> list[str]:
        client = ollama.AsyncClient(host=live_server)
        return await asyncio.gather(*(one(client, c) for c in ("red", "green", "blue")))

    assert all(text.strip() for text in asyncio.run(main()))


def test_ps_load_and_unload(client: ollama.Client) -> None:
    client.chat(model=CHAT_MODEL, messages=QUESTION, options=GREEDY)
    running = {model.model: model for model in client.ps().models}
    assert CHAT_MODEL in running
    smollm = running[CHAT_MODEL]
    assert smollm.size and smollm.size > 10_000_000
    assert smollm.size_vram == 0
    assert smollm.details and smollm.details.family == "llama"
    assert smollm.expires_at and smollm.expires_at > datetime.now(UTC)
    # An empty generate loads, and with keep_alive 0 unloads: what `ollm stop` uses.
    loaded = client.generate(model=BASE_MODEL, keep_alive="10m")
    assert loaded.done and loaded.done_reason == "load"
    assert BASE_MODEL in [model.model for model in client.ps().models]
    unloaded = client.generate(model=BASE_MODEL, keep_alive=0)
    assert unloaded.done and unloaded.done_reason == "unload"
    assert BASE_MODEL not in [model.model for model in client.ps().models]


def test_copy_chat_and_delete(client: ollama.Client) -> None:
    assert client.copy(CHAT_MODEL, COPY_NAME).status == "success"
    try:
        assert COPY_NAME in names(client)
        response = client.chat(model=COPY_NAME, messages=QUESTION, options=GREEDY)
        assert response.model == COPY_NAME
        assert response.message.content and response.message.content.strip()
    finally:
        assert client.delete(COPY_NAME).status == "success"
    assert COPY_NAME not in names(client)
    assert CHAT_MODEL in names(client)
    with pytest.raises(ollama.ResponseError) as info:
        client.delete(COPY_NAME)
    assert info.value.status_code == 404


def test_bundled_model_cannot_be_deleted(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.delete(CHAT_MODEL)
    assert info.value.status_code == 400
    assert CHAT_MODEL in names(client)


def test_unknown_model_is_404(client: ollama.Client) -> None:
    for call in (
        lambda: client.chat(model="nope:1b", messages=QUESTION),
        lambda: list(client.chat(model="nope:1b", messages=QUESTION, stream=True)),
        lambda: client.generate(model="nope:1b", prompt="x"),
        lambda: client.show("nope:1b"),
    ):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 404
        assert "nope:1b" in info.value.error


def test_bad_requests_are_400(client: ollama.Client) -> None:
    for call in (
        lambda: client.chat(model=CHAT_MODEL, messages=QUESTION, options={"temperature": "hot"}),
        lambda: client.generate(model=CHAT_MODEL, prompt="x", suffix="y"),
        lambda: client.chat(model=CHAT_MODEL, messages=QUESTION, keep_alive="soon"),
    ):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 400
        assert info.value.error


# -- pull, from a fake Hugging Face Hub on loopback ----------------------------------------


@pytest.fixture(scope="module")
def pull_server(tmp_path_factory: pytest.TempPathFactory, ollm_home: Path) -> Iterator[str]:
    """A server whose pulls go to a :class:`HubMirror` serving the SmolLM2 file."""
    home = tmp_path_factory.mktemp("pull-home")
    gemma = bundled.locate(bundled.GEMMA3, ollm_home / "models")  # assembled once per session
    assert gemma is not None
    (home / "models" / "bundled").mkdir(parents=True)
    (home / "models" / "bundled" / gemma.name).symlink_to(gemma)
    with HubMirror() as hub:
        hub.add_file(HUB_REPO, HUB_FILE, smollm2_gguf())
        env = {
            "OLLM_HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(home / "hf-home"),
            "OLLM_PRELOAD_DEFAULT_MODEL": "false",
            "OLLM_MAX_RUNNING": "2",
            "OLLM_CONTEXT_PER_SEQUENCE": "512",
            "OLLM_THREADS": "2",
        }
        with run_server(home, home.parent / "pull-server.log", **env) as base_url:
            yield base_url


def test_pull_chat_and_delete(pull_server: str) -> None:
    size = smollm2_gguf().stat().st_size
    with ollama.Client(host=pull_server) as client:
        events = list(client.pull(PULL_NAME, stream=True))
        statuses = [event.status for event in events]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        progress = [event for event in events if event.total]
        assert progress and all(event.digest for event in progress)
        assert progress[-1].completed == progress[-1].total == size
        assert PULLED in names(client)

        response = client.chat(model=PULLED, messages=QUESTION, options=GREEDY)
        assert response.model == PULLED
        assert response.message.content and response.message.content.strip()
        assert client.show(PULLED).details.quantization_level == "Q4_1"

        assert client.pull(PULL_NAME).status == "success"  # not streamed: the last status
        assert client.delete(PULLED).status == "success"
        assert PULLED not in names(client)


def test_pull_errors(pull_server: str) -> None:
    with ollama.Client(host=pull_server) as client:
        for name, status in (("hf.co/TestOrg/no-such-repo", 404), ("../../etc/passwd", 400)):
            with pytest.raises(ollama.ResponseError) as info:
                list(client.pull(name, stream=True))
            assert info.value.status_code == status
            assert info.value.error


def test_format_json_gives_parseable_json(client: ollama.Client) -> None:
    import json

    question = [{"role": "user", "content": "Give me a JSON object describing a cat."}]
    response = client.chat(
        model=CHAT_MODEL,
        messages=question,
        format="json",
        options={"temperature": 0, "num_predict": 120},
    )
    if response.done_reason == "stop":
        assert isinstance(json.loads(response.message.content), dict)
    else:  # cut by num_predict: still a JSON prefix, opening an object
        assert response.message.content.lstrip().startswith("{")
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    shaped = client.chat(
        model=CHAT_MODEL,
        messages=question,
        format=schema,
        options={"temperature": 0, "num_predict": 120},
    )
    assert shaped.done_reason == "stop"
    data = json.loads(shaped.message.content)
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
