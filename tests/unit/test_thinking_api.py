"""A reasoning model's thinking, kept apart from its answer, over the fake backend:
Ollama's ``message.thinking`` / ``thinking`` (and ``think: false``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgi_helpers import running_app

from ollm.backends.base import ModelFacts

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

THOUGHT = "<think>Two and two make four.</think>\n\nFour."
ASK = [{"role": "user", "content": "What is 2 + 2?"}]
# A template that opens the thinking block itself, as DeepSeek-R1's does.
OPENING_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|><think>\n{% endif %}"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ndjson(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_thinking_apart_from_the_answer(tmp_path: Path, path: str) -> None:
    body: dict[str, Any] = {"model": "fake:1", "stream": False, "options": {"num_predict": 200}}
    body |= {"messages": ASK} if path == "/api/chat" else {"prompt": "What is 2 + 2?"}
    async with running_app(tmp_path, context=1024, reply=lambda _p: THOUGHT) as h:
        shown = (await h.client.post(path, json=body)).json()
        hidden = (await h.client.post(path, json={**body, "think": False})).json()
        level = await h.client.post(path, json={**body, "think": "high"})
        bad = await h.client.post(path, json={**body, "think": "very"})
    out = shown["message"] if path == "/api/chat" else shown
    text = "content" if path == "/api/chat" else "response"
    assert out["thinking"] == "Two and two make four."
    assert out[text] == "Four."
    hidden_out = hidden["message"] if path == "/api/chat" else hidden
    assert "thinking" not in hidden_out and hidden_out[text] == "Four."
    assert level.status_code == 200
    assert bad.status_code == 400


async def test_streamed_thinking_then_answer(tmp_path: Path) -> None:
    async with running_app(tmp_path, context=1024, reply=lambda _p: THOUGHT) as h:
        body = {"model": "fake:1", "messages": ASK, "options": {"num_predict": 200}}
        chunks = ndjson((await h.client.post("/api/chat", json=body)).text)
    thinking = "".join(c["message"].get("thinking", "") for c in chunks)
    content = "".join(c["message"]["content"] for c in chunks)
    assert thinking == "Two and two make four." and content == "Four."
    # Thinking comes first; no chunk mixes a marker into either field.
    first_content = next(i for i, c in enumerate(chunks) if c["message"]["content"])
    assert all(not c["message"].get("thinking") for c in chunks[first_content:]), chunks
    assert not any("<think>" in c["message"]["content"] for c in chunks)
    assert chunks[-1]["done"] is True


async def test_a_template_that_opens_the_block(tmp_path: Path) -> None:
    facts = ModelFacts(vocab_size=258, context_train=4096, chat_template=OPENING_TEMPLATE)
    reply = "Two and two make four.</think>\nFour."
    async with running_app(tmp_path, context=1024, facts=facts, reply=lambda _p: reply) as h:
        body = {"model": "fake:1", "messages": ASK, "stream": False}
        message = (await h.client.post("/api/chat", json=body)).json()["message"]
    assert message["thinking"] == "Two and two make four." and message["content"] == "Four."


async def test_a_model_that_does_not_think_is_untouched(tmp_path: Path) -> None:
    async with running_app(tmp_path, reply=lambda _p: "Four. <think> is a tag.") as h:
        body = {"model": "fake:1", "messages": ASK, "stream": False}
        message = (await h.client.post("/api/chat", json=body)).json()["message"]
    assert message == {"role": "assistant", "content": "Four. <think> is a tag."}


def sse(body: str) -> list[dict[str, Any]]:
    return [
        json.loads(line[len("data: ") :])
        for line in body.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


async def test_openai_reasoning_content_apart_from_the_answer(tmp_path: Path) -> None:
    body = {"model": "fake:1", "messages": ASK, "max_tokens": 200}
    async with running_app(tmp_path, context=1024, reply=lambda _p: THOUGHT) as h:
        whole = (await h.client.post("/v1/chat/completions", json=body)).json()
        streamed = await h.client.post("/v1/chat/completions", json={**body, "stream": True})
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == "Two and two make four."
    assert message["content"] == "Four."
    chunks = sse(streamed.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content", "") for d in deltas) == "Four."
    # Reasoning first; no delta mixes a marker into either field.
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all("reasoning_content" not in d for d in deltas[first_content:])
    assert not any("think>" in d.get("content", "") for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_openai_template_that_opens_the_block(tmp_path: Path) -> None:
    facts = ModelFacts(vocab_size=258, context_train=4096, chat_template=OPENING_TEMPLATE)
    reply = "Two and two make four.</think>\nFour."
    async with running_app(tmp_path, context=1024, facts=facts, reply=lambda _p: reply) as h:
        body = {"model": "fake:1", "messages": ASK}
        message = (await h.client.post("/v1/chat/completions", json=body)).json()["choices"][0][
            "message"
        ]
    assert message["reasoning_content"] == "Two and two make four."
    assert message["content"] == "Four."


async def test_openai_no_reasoning_field_for_a_model_that_does_not_think(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path, reply=lambda _p: "Four.") as h:
        body = {"model": "fake:1", "messages": ASK}
        message = (await h.client.post("/v1/chat/completions", json=body)).json()["choices"][0][
            "message"
        ]
        streamed = await h.client.post("/v1/chat/completions", json={**body, "stream": True})
    assert message == {"role": "assistant", "content": "Four."}
    assert "reasoning_content" not in streamed.text
