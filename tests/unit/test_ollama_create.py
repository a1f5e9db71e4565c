"""``/api/create`` and ``/api/blobs`` over the fake backend.

The fake model here echoes its prompt (the rendered chat template, ``<|role|>content``
lines), so each test reads what the model was shown: the created model's system prompt,
its preset history, its template. Its parameters show as the reply's length.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_v1_harness import cheap_password_hashing, signup, v1_app
from asgi_helpers import Harness, running_app
from test_model_gguf_info import write_gguf

from ollm.services.models.preset import ModelPreset, conversation

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

HI = [{"role": "user", "content": "hi"}]
SYSTEM = "Always answer with exactly the word BANANA."
JINJA = (
    "{% for m in messages %}[{{ m.role | upper }}] {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}[ASSISTANT]{% endif %}"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def echo(tokens: list[int]) -> str:
    """The fake model's reply: its prompt, as text."""
    return bytes(t - 2 for t in tokens if t >= 2).decode()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = {"preload_default_model": False, "hf_endpoint": "http://127.0.0.1:9"}
    async with running_app(tmp_path, context=1024, reply=echo, settings=settings) as harness:
        yield harness


def statuses(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line)["status"] for line in response.text.splitlines()]


def assert_error(response: httpx.Response, status: int, needle: str = "") -> str:
    """Ollama's error shape with this status, mentioning ``needle``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"], body
    assert needle.lower() in body["error"].lower(), body
    return body["error"]


async def create(h: Harness, **body: Any) -> httpx.Response:
    return await h.client.post("/api/create", json=body)


async def chat(h: Harness, model: str, messages: list[dict[str, str]], **extra: Any) -> Any:
    body = {"model": model, "messages": messages, "stream": False, **extra}
    response = await h.client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def upload(h: Harness, data: bytes) -> str:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    response = await h.client.post(f"/api/blobs/{digest}", content=data)
    assert response.status_code == 201, response.text
    return digest


# -- create from a model -------------------------------------------------------------------


async def test_create_from_a_model_streams_ollamas_statuses(h: Harness) -> None:
    response = await create(h, model="banana", **{"from": "fake:1"}, system=SYSTEM)
    assert statuses(response) == [
        "reading model metadata",
        "creating system layer",
        "writing manifest",
        "success",
    ]
    listed = {m["name"]: m for m in (await h.client.get("/api/tags")).json()["models"]}
    assert "banana:latest" in listed
    assert listed["banana:latest"]["details"]["parent_model"] == "fake:1"


async def test_create_without_streaming_answers_one_object(h: Harness) -> None:
    response = await create(h, model="quiet", stream=False, **{"from": "fake:1"}, system="x")
    assert response.status_code == 200
    assert response.json() == {"status": "success"}


async def test_the_system_prompt_applies_unless_the_request_has_one(h: Harness) -> None:
    await create(h, model="banana", stream=False, **{"from": "fake:1"}, system=SYSTEM)
    plain = await chat(h, "fake:1", HI)
    made = await chat(h, "banana", HI)
    assert made["model"] == "banana:latest"
    assert made["message"]["content"].startswith(f"<|system|>{SYSTEM}\n<|user|>hi\n")
    assert SYSTEM not in plain["message"]["content"]
    assert made["prompt_eval_count"] > plain["prompt_eval_count"]
    own = [{"role": "system", "content": "Be brief."}, *HI]
    replaced = await chat(h, "banana", own)
    assert replaced["message"]["content"].startswith("<|system|>Be brief.\n<|user|>hi")
    assert SYSTEM not in replaced["message"]["content"]


async def test_generate_and_openai_chat_use_the_system_prompt(h: Harness) -> None:
    await create(h, model="banana", stream=False, **{"from": "fake:1"}, system=SYSTEM)
    body = {"model": "banana", "prompt": "hi", "stream": False}
    generated = (await h.client.post("/api/generate", json=body)).json()
    assert generated["response"].startswith(f"<|system|>{SYSTEM}\n<|user|>hi")
    openai = await h.client.post("/v1/chat/completions", json={"model": "banana", "messages": HI})
    assert openai.status_code == 200, openai.text
    assert SYSTEM in openai.json()["choices"][0]["message"]["content"]


async def test_parameters_are_defaults_the_request_overrides(h: Harness) -> None:
    params = {"num_predict": 5, "temperature": 0.2}
    await create(h, model="short", stream=False, **{"from": "fake:1"}, parameters=params)
    default = await chat(h, "short", HI)
    assert default["done_reason"] == "length" and default["eval_count"] == 5
    overridden = await chat(h, "short", HI, options={"num_predict": 9})
    assert overridden["eval_count"] == 9
    body = {"model": "short", "prompt": "hi", "stream": False}
    generated = (await h.client.post("/api/generate", json=body)).json()
    assert generated["eval_count"] == 5


async def test_stop_parameter_applies(h: Harness) -> None:
    body = {"from": "fake:1", "parameters": {"stop": ["hi"]}}
    await create(h, model="stopper", stream=False, **body)
    reply = await chat(h, "stopper", HI)
    assert reply["message"]["content"] == "<|user|>"  # stopped before the echoed "hi"


async def test_preset_messages_come_before_the_conversation(h: Harness) -> None:
    history = [{"role": "user", "content": "u0"}, {"role": "assistant", "content": "a0"}]
    body = {"from": "fake:1", "system": "S", "messages": history}
    assert "creating messages layer" in statuses(await create(h, model="hist", **body))
    reply = await chat(h, "hist", HI)
    assert reply["message"]["content"].startswith(
        "<|system|>S\n<|user|>u0\n<|assistant|>a0\n<|user|>hi\n<|assistant|>"
    )


async def test_a_jinja_template_replaces_the_files(h: Harness) -> None:
    await create(h, model="tpl", stream=False, **{"from": "fake:1"}, template=JINJA, system="S")
    reply = await chat(h, "tpl", HI)
    assert reply["message"]["content"].startswith("[SYSTEM] S\n[USER] hi\n[ASSISTANT]")
    shown = (await h.client.post("/api/show", json={"model": "tpl"})).json()
    assert shown["template"] == JINJA
    assert 'TEMPLATE """' in shown["modelfile"]


async def test_recreating_a_loaded_model_takes_effect(h: Harness) -> None:
    await create(h, model="m", stream=False, **{"from": "fake:1"}, system="first")
    assert "first" in (await chat(h, "m", HI))["message"]["content"]
    await create(h, model="m", stream=False, **{"from": "fake:1"}, system="second")
    content = (await chat(h, "m", HI))["message"]["content"]
    assert "second" in content and "first" not in content


async def test_a_model_made_from_a_created_one_inherits_and_overrides(h: Harness) -> None:
    params = {"num_predict": 40, "top_k": 5}
    body = {"from": "fake:1", "system": "S1", "parameters": params, "license": ["A", "B"]}
    await create(h, model="base", stream=False, **body)
    await create(h, model="child", stream=False, **{"from": "base"}, parameters={"top_k": 7})
    shown = (await h.client.post("/api/show", json={"model": "child"})).json()
    assert shown["system"] == "S1"
    assert shown["license"] == "A\n\nB"
    assert shown["details"]["parent_model"] == "base:latest"
    lines = shown["parameters"].splitlines()
    assert [line.split() for line in lines] == [["num_predict", "40"], ["top_k", "7"]]


async def test_show_gives_system_parameters_and_modelfile(h: Harness) -> None:
    body = {
        "from": "fake:1",
        "system": SYSTEM,
        "parameters": {"temperature": 0.5, "stop": ["<|end|>", "User:"], "seed": 3},
        "messages": [{"role": "user", "content": "u0"}],
        "license": "MIT",
    }
    await create(h, model="shown", stream=False, **body)
    shown = (await h.client.post("/api/show", json={"model": "shown"})).json()
    assert shown["system"] == SYSTEM
    assert shown["license"] == "MIT"
    assert shown["messages"] == [{"role": "user", "content": "u0"}]
    assert shown["parameters"].splitlines() == [
        f"{'seed':<30} 3",
        f'{"stop":<30} "<|end|>"',
        f'{"stop":<30} "User:"',
        f"{'temperature':<30} 0.5",
    ]
    modelfile = shown["modelfile"]
    assert "FROM fake:1\n" in modelfile
    assert f'SYSTEM """{SYSTEM}"""' in modelfile
    assert "PARAMETER temperature 0.5" in modelfile
    assert "PARAMETER stop User:\n" in modelfile
    assert 'MESSAGE user """u0"""' in modelfile
    assert 'LICENSE """MIT"""' in modelfile
    plain = (await h.client.post("/api/show", json={"model": "fake:1"})).json()
    assert "system" not in plain and "parameters" not in plain


async def test_copy_keeps_the_preset_and_delete_forgets_it(h: Harness) -> None:
    await create(h, model="orig", stream=False, **{"from": "fake:1"}, system=SYSTEM)
    copied = await h.client.post("/api/copy", json={"source": "orig", "destination": "dup"})
    assert copied.status_code == 200
    assert (await h.client.post("/api/show", json={"model": "dup"})).json()["system"] == SYSTEM
    deleted = await h.client.request("DELETE", "/api/delete", json={"model": "orig"})
    assert deleted.status_code == 200
    assert_error(await h.client.post("/api/show", json={"model": "orig"}), 404)
    assert SYSTEM in (await chat(h, "dup", HI))["message"]["content"]
    assert (await chat(h, "fake:1", HI))["message"]["content"].startswith("<|user|>hi")


async def test_create_refusals(h: Harness) -> None:
    base = {"from": "fake:1"}
    assert_error(await create(h, model="q", **base, quantize="q4_K_M"), 400, "quantize")
    adapters = {"adapter.gguf": "sha256:" + "0" * 64}
    assert_error(await create(h, model="a", **base, adapters=adapters), 400, "adapters")
    assert_error(await create(h, model="n"), 400, "from")
    files = {"m.gguf": "sha256:" + "0" * 64}
    assert_error(await create(h, model="b", **base, files=files), 400, "either")
    assert_error(await create(h, **base), 400, "model")
    assert_error(await create(h, model="x", **{"from": "nope:1"}), 404, "not found")
    assert_error(await create(h, model="fake:1", **base, system="x"), 400, "cannot be")
    assert_error(await create(h, model="../x", **base), 400)
    unknown = await create(h, model="u", **base, parameters={"temprature": 1})
    assert_error(unknown, 400, "unknown parameter 'temprature'")
    bad = await create(h, model="u", **base, parameters={"temperature": -1})
    assert_error(bad, 400, "temperature")
    assert_error(await create(h, model="u", **base, parameters={"top_k": "many"}), 400, "top_k")
    bad_role = await create(h, model="u", **base, messages=[{"role": "tool", "content": "x"}])
    assert_error(bad_role, 400, "role")
    old = await create(h, model="u", modelfile="FROM fake:1\nSYSTEM hi")
    assert_error(old, 400, "modelfile")
    # Nothing refused was written.
    names = [m["name"] for m in (await h.client.get("/api/tags")).json()["models"]]
    assert sorted(names) == ["fake:1", "fake:2"]


async def test_templates_that_cannot_render_are_refused(h: Harness) -> None:
    base = {"from": "fake:1"}
    go = "{{ if .System }}<|system|>{{ .System }}{{ end }}<|user|>{{ .Prompt }}"
    assert_error(await create(h, model="go", **base, template=go), 400, "Go template")
    broken = "{% for m in messages %}{{ m.content }"
    assert_error(await create(h, model="broken", **base, template=broken), 400, "template")
    failing = "{{ raise_exception('no') }}"
    assert_error(await create(h, model="failing", **base, template=failing), 400, "template")


# -- blobs ---------------------------------------------------------------------------------


async def test_blob_upload_head_and_digest_checks(h: Harness) -> None:
    data = b"some bytes " * 1000
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert (await h.client.head(f"/api/blobs/{digest}")).status_code == 404
    wrong = f"sha256:{hashlib.sha256(b'other').hexdigest()}"
    assert_error(await h.client.post(f"/api/blobs/{wrong}", content=data), 400, "digest")
    assert (await h.client.head(f"/api/blobs/{wrong}")).status_code == 404
    assert_error(await h.client.post("/api/blobs/sha256:abc", content=data), 400, "digest")
    assert_error(await h.client.post("/api/blobs/md5:" + "0" * 32, content=data), 400)
    assert (await h.client.head("/api/blobs/nonsense")).status_code == 400
    assert await upload(h, data) == digest
    assert (await h.client.head(f"/api/blobs/{digest}")).status_code == 200
    again = await h.client.post(f"/api/blobs/{digest}", content=data)
    assert again.status_code == 200  # already stored, as Ollama answers
    blobs = h.models.registry.store.blobs_dir
    assert sorted(p.name for p in blobs.iterdir()) == [digest.replace(":", "-")]
    assert (blobs / digest.replace(":", "-")).read_bytes() == data


async def test_blob_upload_is_streamed_in_chunks(h: Harness) -> None:
    parts = [bytes([i]) * 300_000 for i in range(8)]  # 2.4 MB, no Content-Length
    digest = f"sha256:{hashlib.sha256(b''.join(parts)).hexdigest()}"

    async def body() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    response = await h.client.post(f"/api/blobs/{digest}", content=body())
    assert response.status_code == 201, response.text
    assert h.models.blobs.path(digest[7:]).stat().st_size == 2_400_000


async def test_blob_size_limit(tmp_path: Path) -> None:
    async with running_app(tmp_path, settings={"max_blob_size": 4096}) as h:
        data = b"x" * 5000
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        declared = await h.client.post(f"/api/blobs/{digest}", content=data)
        assert_error(declared, 413, "max_blob_size")

        async def chunked() -> AsyncIterator[bytes]:
            yield data[:3000]
            yield data[3000:]

        streamed = await h.client.post(f"/api/blobs/{digest}", content=chunked())
        assert_error(streamed, 413, "max_blob_size")
        blobs = h.models.registry.store.blobs_dir
        assert not blobs.exists() or list(blobs.iterdir()) == []  # no partial file left
        small = b"y" * 4000  # within the limit
        assert await upload(h, small)


async def test_blob_bigger_than_the_request_body_limit(tmp_path: Path) -> None:
    async with running_app(tmp_path, settings={"max_body_size": 2048}) as h:
        data = b"z" * 100_000
        assert await upload(h, data)  # blobs have their own limit
        too_big = {"model": "fake:1", "messages": [{"role": "user", "content": "x" * 4000}]}
        assert_error(await h.client.post("/api/chat", json=too_big), 413)


async def test_create_from_an_uploaded_gguf(h: Harness, tmp_path: Path) -> None:
    weights = write_gguf(tmp_path / "tiny.gguf").read_bytes()
    digest = await upload(h, weights)
    body = {"model": "uploaded", "files": {"tiny.gguf": digest}, "system": SYSTEM}
    assert statuses(await create(h, **body))[-1] == "success"
    listed = {m["name"]: m for m in (await h.client.get("/api/tags")).json()["models"]}
    assert listed["uploaded:latest"]["digest"] == digest.removeprefix("sha256:")
    assert listed["uploaded:latest"]["details"]["family"] == "llama"
    assert SYSTEM in (await chat(h, "uploaded", HI))["message"]["content"]
    shown = (await h.client.post("/api/show", json={"model": "uploaded"})).json()
    assert shown["system"] == SYSTEM
    assert shown["details"]["parent_model"] == ""
    assert shown["modelfile"].splitlines()[1].startswith("FROM ")
    assert shown["modelfile"].splitlines()[1].endswith(digest.replace(":", "-"))
    # Deleting the only name of an uploaded file deletes the file.
    deleted = await h.client.request("DELETE", "/api/delete", json={"model": "uploaded"})
    assert deleted.status_code == 200
    assert (await h.client.head(f"/api/blobs/{digest}")).status_code == 404


async def test_create_from_files_refusals(h: Harness) -> None:
    missing = "sha256:" + "1" * 64
    assert_error(await create(h, model="m", files={"m.gguf": missing}), 400, "not uploaded")
    assert_error(await create(h, model="m", files={"m.gguf": "sha256:xyz"}), 400, "digest")
    not_gguf = await upload(h, b"definitely not a model")
    assert_error(await create(h, model="m", files={"m.gguf": not_gguf}), 400, "not a GGUF")
    fake_magic = await upload(h, b"GGUF" + b"\0" * 40)
    assert_error(await create(h, model="m", files={"m.gguf": fake_magic}), 400, "not a GGUF")
    two = {"a.gguf": not_gguf, "b.gguf": fake_magic}
    assert_error(await create(h, model="m", files=two), 400, "exactly one file")


# -- who may create ------------------------------------------------------------------------


async def test_create_and_blobs_are_for_admins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cheap_password_hashing(monkeypatch)
    data = b"blob"
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    body = {"model": "mine", "from": "fake:1", "system": "S", "stream": False}
    async with v1_app(tmp_path, auth=True) as h:
        assert (await h.client.post("/api/create", json=body)).status_code == 401
        assert (await h.client.post(f"/api/blobs/{digest}", content=data)).status_code == 401
        await signup(h.client, "root")  # the first account is the admin
        async with h.new_client() as bob:
            await signup(bob, "bob")
            assert_error(await bob.post("/api/create", json=body), 403)
            assert_error(await bob.post(f"/api/blobs/{digest}", content=data), 403)
            assert (await bob.head(f"/api/blobs/{digest}")).status_code == 403
        assert (await h.client.post("/api/create", json=body)).status_code == 200
        assert (await h.client.post(f"/api/blobs/{digest}", content=data)).status_code == 201


# -- the preset itself ---------------------------------------------------------------------


def test_conversation_order() -> None:
    from ollm.chat.messages import ChatMessage

    preset = ModelPreset(system="S", messages=(("user", "u0"), ("assistant", "a0")))
    turns = [ChatMessage(role="user", content="hi")]
    assert [(m.role, m.content) for m in conversation(preset, turns)] == [
        ("system", "S"),
        ("user", "u0"),
        ("assistant", "a0"),
        ("user", "hi"),
    ]
    own = [ChatMessage(role="system", content="mine"), *turns]
    assert [m.content for m in conversation(preset, own)] == ["mine", "u0", "a0", "hi"]
    assert conversation(None, turns) == turns
    assert conversation(ModelPreset(parameters={"top_k": 1}), turns) == turns


def test_preset_round_trips_and_ignores_garbage() -> None:
    preset = ModelPreset(
        parent="a:b",
        system="S",
        template="T",
        license="L",
        parameters={"stop": ["x"], "temperature": 0.1},
        messages=(("user", "u"),),
    )
    assert ModelPreset.from_json(preset.to_json()) == preset
    assert ModelPreset.from_json(None) is None
    assert ModelPreset.from_json({"messages": [{"role": "tool", "content": "x"}]}) is None
    assert ModelPreset.from_json({"parameters": [1, 2]}) is None
    cleared = preset.derive(parent="a:b", system="", messages=[])
    assert cleared.system is None and cleared.messages == () and cleared.template == "T"


async def test_an_upload_cut_short_leaves_nothing(h: Harness) -> None:
    data = b"q" * 10_000
    path = f"/api/blobs/sha256:{hashlib.sha256(data).hexdigest()}"
    messages = [
        {"type": "http.request", "body": data[:4000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"content-length", b"10000")],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
        "state": {},
    }
    await h.app(scope, receive, send)
    assert (await h.client.head(path)).status_code == 404
    blobs = h.models.registry.store.blobs_dir
    assert list(blobs.iterdir()) == []  # the partial upload was removed
