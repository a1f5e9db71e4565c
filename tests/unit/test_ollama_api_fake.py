"""The Ollama dialect over the fake backend: NDJSON framing, options, errors, aborts."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_helpers import Harness, call_and_disconnect, wait_until
from asgi_helpers import running_app as running_fake_app

from ollm.backends.base import ModelFacts
from ollm.backends.fake import FakeBackend
from ollm.sampling import SamplingParams

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPLY = "Hello from the fake model."
HI = [{"role": "user", "content": "hi"}]
STATS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# No preload (several tests watch loading) and a Hub address nothing listens on, so no
# test can reach the internet.
SERVER_SETTINGS = {"preload_default_model": False, "hf_endpoint": "http://127.0.0.1:9"}


def running_app(tmp_path: Path, **options: Any) -> AbstractAsyncContextManager[Harness]:
    """The app over fake models, with this suite's server settings."""
    return running_fake_app(tmp_path, settings=SERVER_SETTINGS, **options)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_app(tmp_path) as harness:
        yield harness


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    """The objects of an NDJSON body, checking its framing."""
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.text.endswith("\n")
    return [json.loads(line) for line in response.text.splitlines()]


def assert_error(response: httpx.Response, status: int, needle: str = "") -> str:
    """Ollama's error shape: ``{"error": "message"}`` and the status code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert needle.lower() in body["error"].lower(), body
    return body["error"]


def assert_final(chunk: dict[str, Any], reason: str) -> None:
    assert chunk["done"] is True
    assert chunk["done_reason"] == reason
    for key in STATS:
        assert isinstance(chunk[key], int) and chunk[key] >= 0, key
    assert chunk["prompt_eval_count"] > 0
    assert chunk["total_duration"] >= chunk["load_duration"]
    assert chunk["total_duration"] >= chunk["prompt_eval_duration"] + chunk["eval_duration"]


def prompt_echo(prompt: list[int]) -> str:
    """A reply that is the prompt text itself (fake tokens are bytes + 2; BOS is 0)."""
    return bytes(t - 2 for t in prompt if t >= 2).decode()


def sampler_params(backend: FakeBackend) -> SamplingParams:
    """The sampling parameters of the last sequence the backend sampled for."""
    items = [item for call in backend.calls for item in call if item.sampler is not None]
    return items[-1].sampler.params


# -- probes -------------------------------------------------------------------------------


async def test_root_probe_and_version(h: Harness) -> None:
    for method in ("GET", "HEAD"):
        response = await h.client.request(method, "/")
        assert response.status_code == 200
    assert (await h.client.get("/")).text == "Ollama is running"
    version = (await h.client.get("/api/version")).json()
    assert set(version) == {"version"} and version["version"]


# -- chat ---------------------------------------------------------------------------------


async def test_chat_streams_ndjson_by_default(h: Harness) -> None:
    response = await h.client.post("/api/chat", json={"model": "fake:1", "messages": HI})
    assert response.status_code == 200
    chunks = ndjson(response)
    assert len(chunks) >= 2
    *pieces, final = chunks
    assert all(c["done"] is False and "done_reason" not in c for c in pieces)
    assert all(c["model"] == "fake:1" for c in chunks)
    assert all(c["message"]["role"] == "assistant" for c in chunks)
    for chunk in chunks:
        datetime.fromisoformat(chunk["created_at"])  # RFC 3339
    assert "".join(c["message"]["content"] for c in pieces) == REPLY
    assert final["message"] == {"role": "assistant", "content": ""}
    assert_final(final, "stop")
    assert final["eval_count"] >= len(REPLY)
    assert not any(key in c for c in pieces for key in STATS)


async def test_chat_without_streaming_is_one_object(h: Harness) -> None:
    body = {"model": "fake:2", "messages": HI, "stream": False}
    response = await h.client.post("/api/chat", json=body)
    assert response.headers["content-type"].startswith("application/json")
    result = response.json()
    assert result["model"] == "fake:2"
    assert result["message"] == {"role": "assistant", "content": REPLY}
    assert_final(result, "stop")


async def test_model_default_and_legacy_name(h: Harness) -> None:
    result = (await h.client.post("/api/chat", json={"messages": HI, "stream": False})).json()
    assert result["model"] == "fake:1"
    body = {"name": "fake:2", "messages": HI, "stream": False}
    assert (await h.client.post("/api/chat", json=body)).json()["model"] == "fake:2"


async def test_num_predict_gives_length(h: Harness) -> None:
    body = {"messages": HI, "stream": False, "options": {"num_predict": 5}}
    result = (await h.client.post("/api/chat", json=body)).json()
    assert result["message"]["content"] == REPLY[:5]
    assert result["eval_count"] == 5
    assert_final(result, "length")


async def test_num_predict_past_the_context_is_not_an_error(h: Harness) -> None:
    body = {"messages": HI, "stream": False, "options": {"num_predict": 100_000, "num_ctx": 10**6}}
    result = (await h.client.post("/api/chat", json=body)).json()
    assert result["message"]["content"] == REPLY
    assert_final(result, "stop")


async def test_stop_option_cuts_the_reply(h: Harness) -> None:
    body = {"messages": HI, "stream": False, "options": {"stop": ["fake"]}}
    result = (await h.client.post("/api/chat", json=body)).json()
    assert result["message"]["content"] == "Hello from the "
    assert_final(result, "stop")


async def test_ollama_defaults_reach_the_engine(h: Harness) -> None:
    await h.client.post("/api/chat", json={"messages": HI, "stream": False})
    params = sampler_params(h.backend)
    assert (params.temperature, params.top_k, params.top_p) == (0.8, 40, 0.9)
    assert (params.repeat_penalty, params.penalty_last_n, params.max_tokens) == (1.1, 64, None)
    options = {"temperature": 0, "seed": 3, "top_k": 1, "repeat_last_n": -1, "unknown": 1}
    body = {"messages": HI, "stream": False, "options": options}
    assert (await h.client.post("/api/chat", json=body)).status_code == 200
    params = sampler_params(h.backend)
    assert (params.temperature, params.seed, params.top_k, params.penalty_last_n) == (
        0.0,
        3,
        1,
        256,
    )


async def test_chat_without_messages_loads_the_model(h: Harness) -> None:
    assert h.models.loaded_models() == []
    result = (await h.client.post("/api/chat", json={"model": "fake:2"})).json()
    assert result["done"] is True and result["done_reason"] == "load"
    assert result["message"] == {"role": "assistant", "content": ""}
    assert [m.model_id for m in h.models.loaded_models()] == ["fake:2"]


# -- generate -----------------------------------------------------------------------------


async def test_generate_raw_templated_and_with_system(tmp_path: Path) -> None:
    async with running_app(tmp_path, reply=prompt_echo) as h:
        body = {"prompt": "Why?", "raw": True, "stream": False}
        result = (await h.client.post("/api/generate", json=body)).json()
        assert result["response"] == "Why?"
        assert_final(result, "stop")
        assert result["prompt_eval_count"] == len("Why?") + 1  # BOS

        body = {"prompt": "Why?", "system": "Be brief.", "stream": False}
        result = (await h.client.post("/api/generate", json=body)).json()
        assert result["response"] == "<|system|>Be brief.\n<|user|>Why?\n<|assistant|>"

        response = await h.client.post("/api/generate", json={"prompt": "Why?", "model": "fake:2"})
        *pieces, final = ndjson(response)
        assert "".join(p["response"] for p in pieces) == "<|user|>Why?\n<|assistant|>"
        assert final["response"] == "" and final["model"] == "fake:2"
        assert_final(final, "stop")


async def test_generate_on_a_model_without_chat_template(tmp_path: Path) -> None:
    facts = ModelFacts(vocab_size=258, context_train=4096, bos_text="<s>", eos_text="</s>")
    async with running_app(tmp_path, reply=prompt_echo, facts=facts) as h:
        body = {"prompt": "Why?", "system": "Be brief.", "stream": False}
        result = (await h.client.post("/api/generate", json=body)).json()
        assert result["response"] == "Be brief.\n\nWhy?"  # plain text, as a base model wants
        body = {"prompt": "Why?", "stream": False}
        assert (await h.client.post("/api/generate", json=body)).json()["response"] == "Why?"
        # Chat needs a template: a 400 saying so, not a 500.
        assert_error(await h.client.post("/api/chat", json={"messages": HI}), 400, "template")


async def test_generate_with_empty_prompt_loads(h: Harness) -> None:
    response = await h.client.post("/api/generate", json={"model": "fake:1"})
    result = response.json()
    assert result == {
        "model": "fake:1",
        "created_at": result["created_at"],
        "response": "",
        "done": True,
        "done_reason": "load",
    }
    assert [m.model_id for m in h.models.loaded_models()] == ["fake:1"]


# -- keep_alive -----------------------------------------------------------------------------


def expires_in(h: Harness, model_id: str) -> float | None:
    (loaded,) = [m for m in h.models.loaded_models() if m.model_id == model_id]
    return None if loaded.expires_at is None else loaded.expires_at - time.time()


async def test_keep_alive_reaches_the_model_manager(h: Harness) -> None:
    body: dict[str, Any] = {"messages": HI, "stream": False}
    await h.client.post("/api/chat", json=body)
    assert 290 < (expires_in(h, "fake:1") or 0) <= 300  # Ollama's default: 5 minutes
    await h.client.post("/api/chat", json=body | {"keep_alive": "1h30m"})
    assert 5390 < (expires_in(h, "fake:1") or 0) <= 5400
    await h.client.post("/api/generate", json={"prompt": "x", "keep_alive": -1})
    assert expires_in(h, "fake:1") is None  # forever
    await h.client.post("/api/chat", json={"model": "fake:2", "keep_alive": 120})
    assert 110 < (expires_in(h, "fake:2") or 0) <= 120


async def test_keep_alive_zero_unloads(h: Harness) -> None:
    await h.client.post("/api/chat", json={"messages": HI, "stream": False})
    response = await h.client.post("/api/generate", json={"model": "fake:1", "keep_alive": 0})
    result = response.json()
    assert result["done"] is True and result["done_reason"] == "unload"
    assert h.models.loaded_models() == []
    # Unloading what is not loaded is not an error; an unknown model is.
    response = await h.client.post("/api/chat", json={"model": "fake:2", "keep_alive": 0})
    assert response.json()["done_reason"] == "unload"
    assert_error(await h.client.post("/api/generate", json={"model": "x:1", "keep_alive": 0}), 404)
    # A request with keep_alive 0 runs to its end, then its model unloads.
    body = {"messages": HI, "stream": False, "keep_alive": 0}
    result = (await h.client.post("/api/chat", json=body)).json()
    assert result["message"]["content"] == REPLY
    await wait_until(lambda: h.models.loaded_models() == [])


# -- model endpoints ----------------------------------------------------------------------


async def test_tags(h: Harness) -> None:
    tags = (await h.client.get("/api/tags")).json()["models"]
    assert [m["name"] for m in tags] == ["fake:1", "fake:2"]
    first = tags[0]
    assert first["model"] == "fake:1"
    weights = b"not really a model"
    assert first["size"] == len(weights)
    assert first["digest"] == hashlib.sha256(weights).hexdigest()
    assert datetime.fromisoformat(first["modified_at"]).tzinfo is not None
    details = first["details"]
    assert {"parent_model", "format", "family", "parameter_size", "quantization_level"} <= set(
        details
    )


async def test_show(h: Harness) -> None:
    shown = (await h.client.post("/api/show", json={"model": "fake:2"})).json()
    assert "FROM fake:2" in shown["modelfile"]
    assert shown["capabilities"] == ["completion"]
    assert isinstance(shown["model_info"], dict)
    assert shown["details"]["format"]
    datetime.fromisoformat(shown["modified_at"])
    assert (await h.client.post("/api/show", json={"name": "fake:2"})).status_code == 200
    assert_error(await h.client.post("/api/show", json={"model": "nope:1"}), 404, "nope:1")
    assert_error(await h.client.post("/api/show", json={}), 400, "model is required")


async def test_ps(h: Harness) -> None:
    assert (await h.client.get("/api/ps")).json() == {"models": []}
    await h.client.post("/api/chat", json={"messages": HI, "stream": False})
    (running,) = (await h.client.get("/api/ps")).json()["models"]
    assert running["name"] == running["model"] == "fake:1"
    assert running["size"] > 0 and running["size_vram"] == 0
    assert running["context_length"] == 256
    assert running["details"]["format"]
    expires = datetime.fromisoformat(running["expires_at"]).timestamp()
    assert 290 < expires - time.time() <= 300


async def test_copy_and_delete(h: Harness) -> None:
    response = await h.client.post("/api/copy", json={"source": "fake:1", "destination": "mine"})
    assert response.status_code == 200 and response.content == b""
    names = [m["name"] for m in (await h.client.get("/api/tags")).json()["models"]]
    assert "mine:latest" in names
    body = {"model": "mine", "messages": HI, "stream": False}
    result = (await h.client.post("/api/chat", json=body)).json()
    assert result["model"] == "mine:latest" and result["message"]["content"] == REPLY

    response = await h.client.request("DELETE", "/api/delete", json={"model": "mine"})
    assert response.status_code == 200 and response.content == b""
    names = [m["name"] for m in (await h.client.get("/api/tags")).json()["models"]]
    assert names == ["fake:1", "fake:2"]
    assert "mine:latest" not in [m.model_id for m in h.models.loaded_models()]
    assert_error(await h.client.request("DELETE", "/api/delete", json={"name": "mine"}), 404)


async def test_copy_and_delete_errors(h: Harness) -> None:
    copy = "/api/copy"
    assert_error(await h.client.post(copy, json={"source": "x:1", "destination": "y"}), 404)
    assert_error(await h.client.post(copy, json={"source": "fake:1", "destination": "../y"}), 400)
    assert_error(await h.client.post(copy, json={"source": "fake:1", "destination": "fake:2"}), 400)
    assert_error(await h.client.post(copy, json={"source": "fake:1"}), 400, "destination")
    response = await h.client.request("DELETE", "/api/delete", json={"model": "fake:1"})
    assert_error(response, 400, "fake:1")
    assert_error(await h.client.request("DELETE", "/api/delete", json={}), 400, "model")


async def test_pull_errors_come_before_the_stream(h: Harness) -> None:
    for stream in (True, False):
        body = {"model": "../../etc/passwd", "stream": stream}
        assert_error(await h.client.post("/api/pull", json=body), 400, "invalid model name")
    assert_error(await h.client.post("/api/pull", json={}), 400, "model is required")


# -- errors -------------------------------------------------------------------------------


async def test_unknown_model_is_404(h: Harness) -> None:
    for path, body in [
        ("/api/chat", {"model": "nope:1", "messages": HI}),
        ("/api/generate", {"model": "nope:1", "prompt": "x"}),
        ("/api/generate", {"model": "nope:1"}),
        ("/api/chat", {"model": "nope:1", "messages": HI, "stream": False}),
    ]:
        assert "nope:1" in assert_error(await h.client.post(path, json=body), 404, "not found")


async def test_bad_input_is_400_in_ollama_shape(h: Harness) -> None:
    cases: list[tuple[dict[str, Any] | bytes, str]] = [
        (b'{"messages": [', "not valid JSON"),
        (b"", "empty"),
        ({"messages": HI, "options": {"temperature": "hot"}}, "options.temperature"),
        ({"messages": HI, "format": "yaml"}, "format"),
        ({"messages": HI, "keep_alive": "soon"}, "keep_alive"),
        ({"messages": [{"role": "user", "content": "x" * 300}]}, "context length"),
    ]
    for body, needle in cases:
        if isinstance(body, bytes):
            response = await h.client.post(
                "/api/chat", content=body, headers={"content-type": "application/json"}
            )
        else:
            response = await h.client.post("/api/chat", json=body)
        assert_error(response, 400, needle)


async def test_unknown_route_is_404_and_openai_keeps_its_shape(h: Harness) -> None:
    assert_error(await h.client.get("/api/nothing"), 404)
    response = await h.client.post("/v1/chat/completions", json={"model": "nope", "messages": HI})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_queue_full_is_429_with_retry_after(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_running=1, max_waiting=0) as h:
        service = h.app.state.completions
        held = await service.complete(model=None, prompt="hold", params=SamplingParams())
        try:
            response = await h.client.post("/api/chat", json={"messages": HI})
            assert_error(response, 429, "busy")
            assert int(response.headers["retry-after"]) >= 1
        finally:
            await held.stream.aclose()


async def test_engine_failure_before_and_after_headers(tmp_path: Path) -> None:
    async with running_app(tmp_path, fail_on_call=3) as h:
        chunks = ndjson(await h.client.post("/api/chat", json={"messages": HI}))
        assert set(chunks[-1]) == {"error"}
        text = "".join(c["message"]["content"] for c in chunks[:-1])
        assert REPLY.startswith(text)
        assert not any(c.get("done") for c in chunks[:-1])
        result = (await h.client.post("/api/chat", json={"messages": HI, "stream": False})).json()
        assert result["message"]["content"] == REPLY  # the engine survived

    async with running_app(tmp_path, fail_on_call=1) as h:
        response = await h.client.post("/api/generate", json={"prompt": "x", "stream": False})
        assert_error(response, 500)


# -- disconnects abort the generation -----------------------------------------------------


def slow_reply(delay: float) -> Callable[[list[int]], str]:
    def reply(_prompt: list[int]) -> str:
        time.sleep(delay)
        return "abcdefghij" * 30

    return reply


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_client_disconnect_aborts_the_generation(
    tmp_path: Path, stream: bool, path: str
) -> None:
    async with running_app(tmp_path, reply=slow_reply(0.01)) as h:
        body = {"messages": HI, "prompt": "x", "stream": stream, "options": {"num_predict": 200}}
        sent = await call_and_disconnect(h.app, path, body, after_chunks=2 if stream else 0)
        engine = h.models.loaded_models()[0].engine
        assert engine.num_in_flight == 0
        await wait_until(lambda: engine.stats.running == 0)  # the engine freed the slot
        assert len(h.backend.calls) < 100
        if not stream:
            assert sent[0]["status"] == 499
        body = {"prompt": "x", "stream": False, "options": {"num_predict": 3}}
        result = (await h.client.post("/api/generate", json=body)).json()
        assert result["response"] == "abc"
