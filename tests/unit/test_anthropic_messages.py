"""``/v1/messages`` over the fake backend: response shapes, stop reasons, streaming events,
tools, count_tokens, and every error in Anthropic's shape."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_helpers import Harness, call_and_disconnect, running_app, wait_until

from ollm.backends.base import ModelFacts

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPLY = "Hello from the fake model."
HI = [{"role": "user", "content": "hi"}]
BASIC = {"model": "fake:1", "max_tokens": 64, "messages": HI}
# The fake model's template, plus the tools and the calls/results a real template shows.
TOOLS_TEMPLATE = (
    "{% if tools %}<|tools|>{{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
    "{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}"
    "{% if m.tool_call_id %}[{{ m.tool_call_id }}:{{ m.name }}]{% endif %};{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_app(tmp_path) as harness:
        yield harness


def prompt_text(tokens: list[int]) -> str:
    """The fake backend's tokens back as text (bytes shifted by 2; BOS/EOS dropped)."""
    return bytes(t - 2 for t in tokens if t >= 2).decode()


class Prompts:
    """A fake reply that records the prompt it was given (as text) and answers "ok"."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, tokens: list[int]) -> str:
        self.seen.append(prompt_text(tokens))
        return "ok"

    @property
    def last(self) -> str:
        return self.seen[-1]


def tool_facts() -> ModelFacts:
    return ModelFacts(
        vocab_size=258, context_train=4096, bos_text="<s>", eos_text="</s>",
        chat_template=TOOLS_TEMPLATE,
    )  # fmt: skip


def named_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """An Anthropic SSE body as (event name, payload); the name must match the type."""
    assert body.endswith("\n\n"), body[-80:]
    events = []
    for block in body.strip("\n").split("\n\n"):
        name_line, data_line = block.split("\n")
        name = name_line.removeprefix("event: ")
        payload = json.loads(data_line.removeprefix("data: "))
        assert payload["type"] == name, block
        events.append((name, payload))
    return events


def streamed_text(events: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(
        e["delta"]["text"] for n, e in events if n == "content_block_delta" and "text" in e["delta"]
    )


def assert_error(response: httpx.Response, status: int, error_type: str) -> str:
    """Anthropic's error shape, exactly; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == error_type, body
    assert body["error"]["message"]
    return body["error"]["message"]


# -- non-streamed ---------------------------------------------------------------------------


async def test_message_shape(h: Harness) -> None:
    response = await h.client.post("/v1/messages", json=BASIC)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"].startswith("msg_")
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "fake:1"
    assert body["content"] == [{"type": "text", "text": REPLY}]
    assert body["stop_reason"] == "end_turn"
    assert body["stop_sequence"] is None
    usage = body["usage"]
    assert usage["output_tokens"] == len(REPLY)  # one byte per token
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] > 0


async def test_model_may_be_left_out(h: Harness) -> None:
    body = {"max_tokens": 8, "messages": HI}
    assert (await h.client.post("/v1/messages", json=body)).json()["model"] == "fake:1"


async def test_max_tokens_gives_max_tokens(h: Harness) -> None:
    body = (await h.client.post("/v1/messages", json={**BASIC, "max_tokens": 5})).json()
    assert body["content"][0]["text"] == REPLY[:5]
    assert body["stop_reason"] == "max_tokens"
    assert body["usage"]["output_tokens"] == 5


async def test_stop_sequence_names_the_one_that_matched(h: Harness) -> None:
    # "from" comes first in the reply though it is listed second.
    request = {**BASIC, "stop_sequences": ["model", "from", "nowhere"]}
    body = (await h.client.post("/v1/messages", json=request)).json()
    assert body["content"][0]["text"] == "Hello "
    assert body["stop_reason"] == "stop_sequence"
    assert body["stop_sequence"] == "from"


async def test_system_and_blocks_reach_the_prompt(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, reply=prompts) as h:
        system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
        two_texts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
        messages = [
            {"role": "user", "content": two_texts},
            {"role": "assistant", "content": "three"},
            {"role": "user", "content": "four"},
        ]
        request = {**BASIC, "system": system, "messages": messages}
        assert (await h.client.post("/v1/messages", json=request)).status_code == 200
        assert prompts.last == (
            "<|system|>Be brief.\n<|user|>one\ntwo\n<|assistant|>three\n<|user|>four\n<|assistant|>"
        )


async def test_sampling_reaches_the_engine(h: Harness) -> None:
    request = {**BASIC, "temperature": 0.5, "top_p": 0.9, "top_k": 7, "stop_sequences": ["x"]}
    assert (await h.client.post("/v1/messages", json=request)).status_code == 200
    params = h.backend.calls[0][0].sampler.params  # the fake sampler keeps its params
    assert (params.temperature, params.top_p, params.top_k) == (0.5, 0.9, 7)
    assert params.stop == ("x",) and params.max_tokens == 64
    await h.client.post("/v1/messages", json=BASIC)
    defaults = h.backend.calls[-1][0].sampler.params
    assert (defaults.temperature, defaults.top_p, defaults.top_k) == (1.0, 1.0, 0)


async def test_output_config_format_constrains_to_the_schema(h: Harness) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    config = {"effort": "low", "format": {"type": "json_schema", "schema": schema}}
    request = {**BASIC, "output_config": config}
    assert (await h.client.post("/v1/messages", json=request)).status_code == 200
    json_output = h.backend.calls[-1][0].sampler.params.json_output
    assert json_output is not None and json_output.schema == schema
    # Hints the newer client may send: accepted, no effect.
    hints = {"service_tier": "auto", "speed": "fast", "cache_control": {"type": "ephemeral"}}
    assert (await h.client.post("/v1/messages", json={**BASIC, **hints})).status_code == 200
    await h.client.post("/v1/messages", json=BASIC)
    assert h.backend.calls[-1][0].sampler.params.json_output is None


# -- streamed -------------------------------------------------------------------------------


async def test_stream_event_sequence(h: Harness) -> None:
    response = await h.client.post("/v1/messages", json={**BASIC, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = named_events(response.text)
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == []
    assert start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert all(e["index"] == 0 and e["delta"]["type"] == "text_delta" for _, e in events[3:-3])
    assert streamed_text(events) == REPLY
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == len(REPLY)


async def test_stream_stops(h: Harness) -> None:
    request = {**BASIC, "stream": True, "stop_sequences": ["fake"]}
    events = named_events((await h.client.post("/v1/messages", json=request)).text)
    assert streamed_text(events) == "Hello from the "
    assert events[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "fake"}
    request = {**BASIC, "stream": True, "max_tokens": 3}
    events = named_events((await h.client.post("/v1/messages", json=request)).text)
    assert streamed_text(events) == "Hel"
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


async def test_engine_failure_mid_stream_is_an_error_event(tmp_path: Path) -> None:
    async with running_app(tmp_path, fail_on_call=3) as h:
        request = {**BASIC, "stream": True}
        events = named_events((await h.client.post("/v1/messages", json=request)).text)
        assert events[0][0] == "message_start"
        name, error = events[-1]
        assert name == "error"
        assert error["error"]["type"] == "api_error" and error["error"]["message"]
        assert REPLY.startswith(streamed_text(events))
        # The engine survives the failed step.
        body = (await h.client.post("/v1/messages", json=BASIC)).json()
        assert body["content"][0]["text"] == REPLY


async def test_engine_failure_before_the_reply_is_a_500(tmp_path: Path) -> None:
    async with running_app(tmp_path, fail_on_call=1) as h:
        assert_error(await h.client.post("/v1/messages", json=BASIC), 500, "api_error")


def slow_reply(_prompt: list[int]) -> str:
    """A long reply at 10 ms a token (the callback runs once per token)."""
    time.sleep(0.01)
    return "abcdefghij" * 30


@pytest.mark.parametrize("stream", [True, False])
async def test_client_disconnect_aborts_the_generation(tmp_path: Path, stream: bool) -> None:
    async with running_app(tmp_path, reply=slow_reply) as h:
        body = {**BASIC, "max_tokens": 200, "stream": stream}
        sent = await call_and_disconnect(
            h.app, "/v1/messages", body, after_chunks=2 if stream else 0
        )
        engine = h.models.loaded_models()[0].engine
        await wait_until(lambda: engine.stats.running == 0 and engine.num_in_flight == 0)
        if not stream:
            assert sent[0]["status"] == 499


# -- tools ----------------------------------------------------------------------------------


async def test_tool_use_reply(tmp_path: Path) -> None:
    async with running_app(
        tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: "Let me look. " + CALL
    ) as h:
        request = {**BASIC, "max_tokens": 200, "tools": [WEATHER]}
        body = (await h.client.post("/v1/messages", json=request)).json()
        text, call = body["content"]
        assert text == {"type": "text", "text": "Let me look."}
        assert call["type"] == "tool_use" and call["id"].startswith("toolu_")
        assert call["name"] == "get_weather" and call["input"] == {"city": "Paris"}
        assert body["stop_reason"] == "tool_use" and body["stop_sequence"] is None


async def test_tool_use_streamed(tmp_path: Path) -> None:
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: CALL) as h:
        request = {**BASIC, "max_tokens": 200, "tools": [WEATHER], "stream": True}
        events = named_events((await h.client.post("/v1/messages", json=request)).text)
        names = [n for n, _ in events]
        assert names == [
            "message_start", "ping", "content_block_start", "content_block_delta",
            "content_block_stop", "message_delta", "message_stop",
        ]  # fmt: skip
        block = events[2][1]["content_block"]
        assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
        assert block["name"] == "get_weather" and block["input"] == {}
        delta = events[3][1]["delta"]
        assert delta["type"] == "input_json_delta"
        assert json.loads(delta["partial_json"]) == {"city": "Paris"}
        assert events[5][1]["delta"]["stop_reason"] == "tool_use"


async def test_text_then_tool_use_streamed(tmp_path: Path) -> None:
    reply = lambda _p: "Let me look. " + CALL  # noqa: E731
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=reply) as h:
        request = {**BASIC, "max_tokens": 200, "tools": [WEATHER], "stream": True}
        events = named_events((await h.client.post("/v1/messages", json=request)).text)
        blocks = [(n, e["index"]) for n, e in events if n.startswith("content_block_")]
        assert blocks[0] == ("content_block_start", 0)
        assert ("content_block_stop", 0) in blocks
        assert blocks[-3:] == [
            ("content_block_start", 1),
            ("content_block_delta", 1),
            ("content_block_stop", 1),
        ]
        assert streamed_text(events).strip() == "Let me look."
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_forced_tool_choice_constrains_decoding(tmp_path: Path) -> None:
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: CALL) as h:
        for choice in ({"type": "any"}, {"type": "tool", "name": "get_weather"}):
            request = {**BASIC, "max_tokens": 200, "tools": [WEATHER], "tool_choice": choice}
            body = (await h.client.post("/v1/messages", json=request)).json()
            assert body["stop_reason"] == "tool_use", body
            params = h.backend.calls[-1][0].sampler.params
            assert params.json_output is not None and params.json_output.schema


async def test_tools_that_are_not_called_stream_as_text(tmp_path: Path) -> None:
    async with running_app(tmp_path, context=1024, facts=tool_facts()) as h:
        request = {**BASIC, "tools": [WEATHER], "stream": True}
        events = named_events((await h.client.post("/v1/messages", json=request)).text)
        assert streamed_text(events) == REPLY
        assert [e["index"] for n, e in events if n.startswith("content_block")] == [0] * (
            len(events) - 4
        )
        assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


async def test_tool_history_reaches_the_template(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=prompts) as h:
        use = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}}
        result = {
            "type": "tool_result",
            "tool_use_id": "toolu_1",
            "content": [{"type": "text", "text": "sunny"}],
        }
        failed = {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": "no",
            "is_error": True,
        }
        messages = [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, use]},
            {"role": "user", "content": [result, failed, {"type": "text", "text": "Tomorrow?"}]},
        ]
        request = {
            **BASIC,
            "tools": [WEATHER],
            "tool_choice": {"type": "auto"},
            "messages": messages,
        }
        assert (await h.client.post("/v1/messages", json=request)).status_code == 200
        text = prompts.last
        assert text.startswith('<|tools|>[{"type": "function", "function": {"name": "get_weather"')
        assert '<|assistant|>Checking.[{"id": "toolu_1"' in text
        assert '"arguments": {"city": "P"}' in text
        assert "<|tool|>sunny[toolu_1:get_weather];" in text  # the call's name looked up
        assert "<|tool|>Error: no[toolu_2:];<|user|>Tomorrow?;<|assistant|>" in text


async def test_tool_choice_none_hides_the_tools(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=prompts) as h:
        request = {**BASIC, "tools": [WEATHER], "tool_choice": {"type": "none"}}
        assert (await h.client.post("/v1/messages", json=request)).status_code == 200
        assert prompts.last.startswith("<|user|>hi;")
        request = {**BASIC, "tools": [WEATHER]}
        assert (await h.client.post("/v1/messages", json=request)).status_code == 200
        assert prompts.last.startswith("<|tools|>")


async def test_tools_on_a_model_without_tool_support(h: Harness) -> None:
    request = {**BASIC, "tools": [WEATHER]}
    message = assert_error(
        await h.client.post("/v1/messages", json=request), 400, "invalid_request_error"
    )
    assert "does not support tools" in message


# -- count_tokens ---------------------------------------------------------------------------


async def test_count_tokens_matches_the_prompt(tmp_path: Path) -> None:
    async with running_app(tmp_path, context=1024, facts=tool_facts()) as h:
        counted = await h.client.post(
            "/v1/messages/count_tokens", json={"model": "fake:1", "messages": HI}
        )
        assert counted.status_code == 200, counted.text
        assert set(counted.json()) == {"input_tokens"}
        usage = (await h.client.post("/v1/messages", json=BASIC)).json()["usage"]
        prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
        assert counted.json()["input_tokens"] == prompt
        decoded = len(h.backend.calls)
        with_tools = await h.client.post(
            "/v1/messages/count_tokens", json={"messages": HI, "tools": [WEATHER]}
        )
        assert with_tools.json()["input_tokens"] > prompt
        assert len(h.backend.calls) == decoded  # counting runs no forward pass


async def test_count_tokens_errors(h: Harness) -> None:
    url = "/v1/messages/count_tokens"
    assert_error(await h.client.post(url, json={}), 400, "invalid_request_error")
    bad = {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}
    assert "image" in assert_error(await h.client.post(url, json=bad), 400, "invalid_request_error")
    missing = {"model": "nope:1", "messages": HI}
    assert_error(await h.client.post(url, json=missing), 404, "not_found_error")
    extra = {"messages": HI, "max_tokens": 5}  # count_tokens takes no generation options
    assert_error(await h.client.post(url, json=extra), 400, "invalid_request_error")


# -- errors -----------------------------------------------------------------------------------


def with_message(content: Any, role: str = "user") -> dict[str, Any]:
    return {**BASIC, "messages": [{"role": role, "content": content}]}


BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("max_tokens missing", {"messages": HI}, "max_tokens"),
    ("max_tokens zero", {**BASIC, "max_tokens": 0}, "max_tokens"),
    ("messages missing", {"max_tokens": 5}, "messages"),
    ("messages empty", {**BASIC, "messages": []}, "messages"),
    ("temperature above 1", {**BASIC, "temperature": 1.5}, "temperature"),
    ("negative top_k", {**BASIC, "top_k": -1}, "top_k"),
    ("top_p above 1", {**BASIC, "top_p": 1.5}, "top_p"),
    ("unknown field", {**BASIC, "frequency_penalty": 1}, "frequency_penalty"),
    ("system role", with_message("x", role="system"), "role"),
    ("image block", with_message([{"type": "image", "source": {}}]), "'image'"),
    ("block without type", with_message([{"text": "x"}]), "type"),
    (
        "image in a tool result",
        with_message([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]),
        "'image'",
    ),
    (
        "tool_use from the user",
        with_message([{"type": "tool_use", "id": "t", "name": "f", "input": {}}]),
        "tool_use",
    ),
    (
        "tool_result from the assistant",
        with_message([{"type": "tool_result", "tool_use_id": "t"}], role="assistant"),
        "tool_result",
    ),
    ("image system block", {**BASIC, "system": [{"type": "image"}]}, "'image'"),
    (
        "thinking enabled",
        {**BASIC, "thinking": {"type": "enabled", "budget_tokens": 1024}},
        "thinking",
    ),
    (
        "tool choice without name",
        {**BASIC, "tools": [WEATHER], "tool_choice": {"type": "tool"}},
        "name",
    ),
    ("bad tool choice", {**BASIC, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ("tool without schema", {**BASIC, "tools": [{"name": "f"}]}, "input_schema"),
    ("bad tool name", {**BASIC, "tools": [{**WEATHER, "name": "a b"}]}, "name"),
    ("empty stop sequence", {**BASIC, "stop_sequences": [""]}, "stop"),
    ("stream not a bool", {**BASIC, "stream": "yes please"}, "stream"),
    (
        "output format not json_schema",
        {**BASIC, "output_config": {"format": {"type": "xml"}}},
        "format",
    ),
    ("a container", {**BASIC, "container": "c1"}, "container"),
    (
        "a prefilled reply",
        {**BASIC, "messages": [*HI, {"role": "assistant", "content": "Sure"}]},
        "prefill",
    ),
]


@pytest.mark.parametrize(("request_body", "mentions"), [(b, m) for _, b, m in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])  # fmt: skip
async def test_bad_requests_are_400_in_anthropic_shape(
    h: Harness, request_body: dict[str, Any], mentions: str
) -> None:
    response = await h.client.post("/v1/messages", json=request_body)
    assert mentions in assert_error(response, 400, "invalid_request_error")


async def test_thinking_disabled_is_accepted(h: Harness) -> None:
    request = {**BASIC, "thinking": {"type": "disabled"}, "metadata": {"user_id": "u1"}}
    assert (await h.client.post("/v1/messages", json=request)).status_code == 200


async def test_body_errors(h: Harness) -> None:
    json_type = {"content-type": "application/json"}
    broken = await h.client.post("/v1/messages", content=b'{"max_tokens": ', headers=json_type)
    assert "JSON" in assert_error(broken, 400, "invalid_request_error")
    not_object = await h.client.post("/v1/messages", json=[1, 2])
    assert_error(not_object, 400, "invalid_request_error")


async def test_service_errors(h: Harness) -> None:
    missing = await h.client.post("/v1/messages", json={**BASIC, "model": "nope:1"})
    assert_error(missing, 404, "not_found_error")
    long = with_message("x" * 400)  # the fake context is 256 tokens
    assert "context length" in assert_error(
        await h.client.post("/v1/messages", json=long), 400, "invalid_request_error"
    )
    named = {**BASIC, "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "other"}}
    assert_error(await h.client.post("/v1/messages", json=named), 400, "invalid_request_error")


async def test_routing_errors(h: Harness) -> None:
    assert_error(await h.client.get("/v1/messages"), 405, "invalid_request_error")
    assert_error(await h.client.post("/v1/messages/batches", json={}), 404, "not_found_error")
    # The OpenAI paths next door keep OpenAI's shape.
    openai = (await h.client.post("/v1/chat/completions", json={})).json()
    assert set(openai["error"]) == {"message", "type", "param", "code"}


async def test_middleware_errors_are_in_anthropic_shape(tmp_path: Path) -> None:
    async with running_app(tmp_path, settings={"max_body_size": 1024}) as h:
        big = with_message("x" * 2000)
        assert_error(await h.client.post("/v1/messages", json=big), 413, "request_too_large")
        foreign = {"host": "attacker.example"}
        response = await h.client.post("/v1/messages", json=BASIC, headers=foreign)
        assert_error(response, 400, "invalid_request_error")
        # The SDK sends no Origin, only its own headers: not a cross-site write.
        sdk = {"x-api-key": "anything", "anthropic-version": "2023-06-01"}
        assert (await h.client.post("/v1/messages", json=BASIC, headers=sdk)).status_code == 200
