"""``/api/create`` and ``/api/blobs`` through the official ``ollama`` client, unchanged,
against a real server and the bundled SmolLM2.

Greedy decoding: a created model's chat must be exactly the base model's chat with the
created system prompt sent as a system message (same prompt tokens, same reply), and
differ from the base model's chat without it (SmolLM2's template then puts in its own
default system prompt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import ollama
import pytest
from hf_mirror import smollm2_gguf

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BASE = "smollm2:135m"
SYSTEM = "Always answer with exactly the word BANANA."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "num_predict": 24}
FROM_MODEL = "banana-bot:latest"
FROM_BLOB = "banana-blob:latest"


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[ollama.Client]:
    with ollama.Client(host=live_server, timeout=120) as c:
        yield c
        for name in (FROM_MODEL, FROM_BLOB):
            with contextlib.suppress(ollama.ResponseError):
                c.delete(name)


def with_system(client: ollama.Client) -> ollama.ChatResponse:
    """The base model, told the system prompt in the request."""
    messages = [{"role": "system", "content": SYSTEM}, *QUESTION]
    return client.chat(model=BASE, messages=messages, options=GREEDY)


def assert_applies_the_system_prompt(client: ollama.Client, model: str) -> None:
    expected = with_system(client)
    plain = client.chat(model=BASE, messages=QUESTION, options=GREEDY)
    made = client.chat(model=model, messages=QUESTION, options=GREEDY)
    assert made.model == model
    assert made.prompt_eval_count == expected.prompt_eval_count
    assert made.prompt_eval_count != plain.prompt_eval_count
    assert made.message.content == expected.message.content  # greedy: the same reply
    assert made.message.content


def test_create_from_a_model_with_a_system_prompt(client: ollama.Client, live_server: str) -> None:
    steps = list(
        client.create(
            model=FROM_MODEL,
            from_=BASE,
            system=SYSTEM,
            parameters={"num_predict": 8, "temperature": 0},
            stream=True,
        )
    )
    statuses = [step.status for step in steps]
    assert statuses[0] == "reading model metadata"
    assert "creating system layer" in statuses and "writing manifest" in statuses
    assert statuses[-1] == "success"
    assert FROM_MODEL in [m.model for m in client.list().models]
    assert_applies_the_system_prompt(client, FROM_MODEL)

    # Its parameters are the defaults: 8 tokens at most unless the request says otherwise.
    short = client.chat(model=FROM_MODEL, messages=QUESTION)
    assert short.eval_count is not None and short.eval_count <= 8
    again = client.chat(model=FROM_MODEL, messages=QUESTION)
    assert again.message.content == short.message.content  # temperature 0 from the model

    shown = client.show(FROM_MODEL)
    assert shown.modelfile and f'SYSTEM """{SYSTEM}"""' in shown.modelfile
    assert shown.parameters and "num_predict" in shown.parameters
    assert shown.details and shown.details.parent_model == BASE
    assert shown.template and "im_start" in shown.template  # the base's template
    raw = httpx.post(f"{live_server}/api/show", json={"model": FROM_MODEL})
    assert raw.json()["system"] == SYSTEM


def test_openai_chat_uses_the_system_prompt(client: ollama.Client, live_server: str) -> None:
    client.create(model=FROM_MODEL, from_=BASE, system=SYSTEM)
    body = {"model": FROM_MODEL, "messages": QUESTION, "temperature": 0, "max_tokens": 24}
    made = httpx.post(f"{live_server}/v1/chat/completions", json=body, timeout=120).json()
    messages = [{"role": "system", "content": SYSTEM}, *QUESTION]
    told = httpx.post(
        f"{live_server}/v1/chat/completions", json={**body, "model": BASE, "messages": messages}
    ).json()
    assert made["usage"]["prompt_tokens"] == told["usage"]["prompt_tokens"]
    assert made["choices"][0]["message"]["content"] == told["choices"][0]["message"]["content"]


def test_create_from_an_uploaded_gguf(client: ollama.Client, live_server: str) -> None:
    path = smollm2_gguf()
    digest = client.create_blob(path)
    assert digest.startswith("sha256:")
    assert httpx.head(f"{live_server}/api/blobs/{digest}").status_code == 200
    done = client.create(model=FROM_BLOB, files={path.name: digest}, system=SYSTEM)
    assert done.status == "success"
    listed = {m.model: m for m in client.list().models}
    assert listed[FROM_BLOB].digest == digest.removeprefix("sha256:")
    assert listed[FROM_BLOB].size == path.stat().st_size
    assert_applies_the_system_prompt(client, FROM_BLOB)
    shown = client.show(FROM_BLOB)
    assert shown.details and shown.details.family == "llama"
    assert shown.modelfile and SYSTEM in shown.modelfile


def test_refusals_reach_the_client(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as quantize:
        client.create(model="q", from_=BASE, quantize="q4_K_M")
    assert quantize.value.status_code == 400 and "quantize" in quantize.value.error
    with pytest.raises(ollama.ResponseError) as missing:
        client.create(model="m", files={"m.gguf": "sha256:" + "0" * 64})
    assert missing.value.status_code == 400 and "not uploaded" in missing.value.error
    with pytest.raises(ollama.ResponseError) as unknown:
        client.create(model="u", from_="no-such-model:1")
    assert unknown.value.status_code == 404
