"""Tool calling on ``/v1/chat/completions`` and ``/api/chat`` over the fake backend: the
tools reach the template, replies become calls (whole and streamed), history with calls and
results is rendered, and every refusal is a 400 in the dialect's shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from asgi_helpers import running_app
from test_anthropic_messages import CALL, Prompts, tool_facts

from ollm.chat.tool_calls import parse_tool_calls

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
PROSE_THEN_CALL = "Let me look. " + CALL
TWO_CALLS = CALL + '\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sse_chunks(body: str) -> list[dict[str, Any]]:
    lines = [line.removeprefix("data: ") for line in body.split("\n\n") if line.strip()]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def ndjson(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def assert_openai_error(response: Any, param: str | None, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert words in error["message"], error
    if param is not None:
        assert error["param"] == param, error


# -- OpenAI ---------------------------------------------------------------------------------


async def test_openai_reply_with_a_call(tmp_path: Path) -> None:
    prompts = Prompts()

    def reply(tokens: list[int]) -> str:
        prompts(tokens)
        return PROSE_THEN_CALL

    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=reply) as h:
        body = {"model": "fake:1", "messages": ASK, "tools": [WEATHER], "max_tokens": 200}
        response = await h.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Let me look."
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}  # a JSON string
    # The tools went to the model through its template.
    assert prompts.last.startswith("<|tools|>") and '"get_weather"' in prompts.last


@pytest.mark.parametrize("reply", [CALL, PROSE_THEN_CALL, TWO_CALLS, "No call here."])
async def test_openai_streamed_calls_reassemble_to_the_whole_reply(
    tmp_path: Path, reply: str
) -> None:
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: reply) as h:
        body = {"model": "fake:1", "messages": ASK, "tools": [WEATHER], "max_tokens": 300}
        whole = (await h.client.post("/v1/chat/completions", json=body)).json()["choices"][0]
        streamed = await h.client.post("/v1/chat/completions", json={**body, "stream": True})
    chunks = sse_chunks(streamed.text)
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    assert deltas[0]["delta"]["role"] == "assistant"
    content = "".join(d["delta"].get("content") or "" for d in deltas)
    calls: dict[int, dict[str, Any]] = {}
    for d in deltas:
        for piece in d["delta"].get("tool_calls") or []:
            call = calls.setdefault(piece["index"], {"id": None, "name": "", "arguments": ""})
            call["id"] = piece.get("id") or call["id"]
            function = piece.get("function") or {}
            call["name"] += function.get("name") or ""
            call["arguments"] += function.get("arguments") or ""
    assert deltas[-1]["finish_reason"] == whole["finish_reason"]
    expected = whole["message"].get("tool_calls") or []
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"])) for c in expected
    ]
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert content.strip() == (whole["message"]["content"] or "").strip()
    assert "arguments" not in content  # no part of a call leaks as text


async def test_openai_history_with_calls_and_results_is_rendered(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, context=2048, facts=tool_facts(), reply=prompts) as h:
        history = [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
        ]
        body = {"model": "fake:1", "messages": history, "tools": [WEATHER]}
        response = await h.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "stop"
    prompt = prompts.last
    assert '"city": "Paris"' in prompt or '"city":"Paris"' in prompt  # the call, as an object
    assert "<|tool|>18 C and sunny[call_1:" in prompt


async def test_openai_tool_choice_none_and_named(tmp_path: Path) -> None:
    prompts = Prompts()
    other = {**WEATHER, "function": {**WEATHER["function"], "name": "get_time"}}
    async with running_app(tmp_path, context=2048, facts=tool_facts(), reply=prompts) as h:
        base = {"model": "fake:1", "messages": ASK, "tools": [WEATHER, other]}
        none = await h.client.post("/v1/chat/completions", json={**base, "tool_choice": "none"})
        named = {"type": "function", "function": {"name": "get_time"}}
        forced = await h.client.post("/v1/chat/completions", json={**base, "tool_choice": named})
    assert none.status_code == 200 and forced.status_code == 200, forced.text
    seen = list(dict.fromkeys(prompts.seen))  # the reply is asked for at every token
    assert len(seen) == 2
    assert "<|tools|>" not in seen[0]  # "none": the model is not shown the tools
    assert '"get_time"' in seen[1] and '"get_weather"' not in seen[1]


@pytest.mark.parametrize(
    ("extra", "param", "words"),
    [
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [WEATHER, WEATHER]}, "tools", "unique"),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "nope"}},
            },
            "tool_choice",
            "nope",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": "required",
                "response_format": {"type": "json_object"},
            },
            "tool_choice",
            "JSON",
        ),
    ],
)
async def test_openai_tool_refusals(
    tmp_path: Path, extra: dict[str, Any], param: str, words: str
) -> None:
    async with running_app(tmp_path, context=1024, facts=tool_facts()) as h:
        body = {"model": "fake:1", "messages": ASK, **extra}
        response = await h.client.post("/v1/chat/completions", json=body)
    assert_openai_error(response, param, words)


async def test_openai_model_without_tool_support(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:  # the fake template has no place for tools
        body = {"model": "fake:1", "messages": ASK, "tools": [WEATHER]}
        response = await h.client.post("/v1/chat/completions", json=body)
        plain = await h.client.post("/v1/chat/completions", json={**body, "tools": []})
    assert_openai_error(response, "tools", "does not support tools")
    assert plain.status_code == 200


# -- Ollama ---------------------------------------------------------------------------------


async def test_ollama_reply_with_a_call(tmp_path: Path) -> None:
    async with running_app(
        tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: TWO_CALLS
    ) as h:
        body = {"model": "fake:1", "messages": ASK, "tools": [WEATHER], "stream": False}
        response = await h.client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    message = response.json()["message"]
    assert message["content"] == ""
    calls = message["tool_calls"]
    # Ollama's arguments are an object, and each call has its index.
    assert [c["function"] for c in calls] == [
        {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}},
        {"index": 1, "name": "get_weather", "arguments": {"city": "Oslo"}},
    ]
    assert response.json()["done_reason"] == "stop"


async def test_ollama_streamed_calls_come_whole_before_the_last_chunk(tmp_path: Path) -> None:
    async with running_app(
        tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: PROSE_THEN_CALL
    ) as h:
        body = {"model": "fake:1", "messages": ASK, "tools": [WEATHER]}
        response = await h.client.post("/api/chat", json=body)
    chunks = ndjson(response.text)
    assert chunks[-1]["done"] is True and "tool_calls" not in chunks[-1]["message"]
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1 and with_calls[0] is chunks[-2]
    [call] = with_calls[0]["message"]["tool_calls"]
    assert call["function"]["arguments"] == {"city": "Paris"}
    text = "".join(c["message"]["content"] for c in chunks)
    assert text.strip() == "Let me look."
    assert parse_tool_calls(PROSE_THEN_CALL, []).content == PROSE_THEN_CALL  # sanity


async def test_ollama_history_with_calls_and_tool_name(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, context=2048, facts=tool_facts(), reply=prompts) as h:
        history = [
            *ASK,
            {
                "role": "assistant",
                "content": "",
                # Ollama sends objects; OpenAI-minded clients send a JSON string.
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                ],
            },
            {"role": "tool", "tool_name": "get_weather", "content": "18 C"},
            {"role": "tool", "tool_name": "get_weather", "content": "3 C"},
        ]
        body = {"model": "fake:1", "messages": history, "tools": [WEATHER], "stream": False}
        response = await h.client.post("/api/chat", json=body)
    assert response.status_code == 200, response.text
    prompt = prompts.last
    assert "Paris" in prompt and "Oslo" in prompt
    # Each result is linked to the call it answers (in order), for templates that need ids.
    call_ids = re.findall(r'"id": "(call_[0-9a-f]+)"', prompt)
    assert len(call_ids) == 2
    assert f"<|tool|>18 C[{call_ids[0]}:get_weather]" in prompt
    assert f"<|tool|>3 C[{call_ids[1]}:get_weather]" in prompt


async def test_ollama_refusals(tmp_path: Path) -> None:
    async with running_app(tmp_path) as h:
        body = {"model": "fake:1", "messages": ASK, "tools": [WEATHER], "stream": False}
        unsupported = await h.client.post("/api/chat", json=body)
        bad_args = await h.client.post(
            "/api/chat",
            json={
                **body,
                "tools": [],
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}],
                    }
                ],
            },
        )
    assert unsupported.status_code == 400
    assert "does not support tools" in unsupported.json()["error"]
    assert bad_args.status_code == 400 and "not valid JSON" in bad_args.json()["error"]
