"""The real FastAPI app over the fake backend: wire format, streaming, errors, aborts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_helpers import Harness, call_and_disconnect, running_app, wait_until
from starlette.requests import Request

from ollm.api.http.deps import caller_identity
from ollm.sampling import SamplingParams

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPLY = "Hello from the fake model."
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running_app(tmp_path) as harness:
        yield harness


def sse_events(body: str) -> list[Any]:
    """Parse an SSE body into JSON payloads, with ``"[DONE]"`` kept as a string."""
    assert body.endswith("\n\n")
    events = []
    for block in body.strip("\n").split("\n\n"):
        assert block.startswith("data: "), block
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def assert_error(response: httpx.Response, status: int, **expected: Any) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    for key, value in expected.items():
        assert error[key] == value, (key, error)
    return error


# -- happy paths ------------------------------------------------------------------------


async def test_health(h: Harness) -> None:
    response = await h.client.get("/health")
    assert response.json() == {"status": "ok"}


async def test_list_and_retrieve_models(h: Harness) -> None:
    listing = (await h.client.get("/v1/models")).json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["fake:1", "fake:2"]
    assert all(m["object"] == "model" and m["owned_by"] for m in listing["data"])
    card = (await h.client.get("/v1/models/fake:2")).json()
    assert card["id"] == "fake:2"
    assert_error(await h.client.get("/v1/models/nope:1"), 404, code="model_not_found")


async def test_chat_completion(h: Harness) -> None:
    response = await h.client.post("/v1/chat/completions", json={"model": "fake:1", "messages": HI})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "fake:1"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": REPLY}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] >= len(REPLY)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_model_defaults_and_bare_name(h: Harness) -> None:
    response = await h.client.post("/v1/chat/completions", json={"messages": HI})
    assert response.json()["model"] == "fake:1"
    response = await h.client.post("/v1/completions", json={"model": "fake", "prompt": "x"})
    assert_error(response, 404, code="model_not_found")  # "fake" names two tags


async def test_max_tokens_gives_length(h: Harness) -> None:
    body = {"messages": HI, "max_tokens": 5}
    result = (await h.client.post("/v1/chat/completions", json=body)).json()
    assert result["choices"][0]["message"]["content"] == REPLY[:5]
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 5
    body = {"messages": HI, "max_completion_tokens": 3}
    result = (await h.client.post("/v1/chat/completions", json=body)).json()
    assert result["usage"]["completion_tokens"] == 3


async def test_stop_string_is_cut_and_gives_stop(h: Harness) -> None:
    body = {"messages": HI, "stop": ["fake", "zzz"]}
    result = (await h.client.post("/v1/chat/completions", json=body)).json()
    assert result["choices"][0]["message"]["content"] == "Hello from the "
    assert result["choices"][0]["finish_reason"] == "stop"


async def test_streamed_chat(h: Harness) -> None:
    body = {"model": "fake:1", "messages": HI, "stream": True}
    response = await h.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "fake:1" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == REPLY
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert all(c.get("usage") is None for c in chunks)


async def test_streamed_chat_with_usage(h: Harness) -> None:
    body = {
        "messages": HI,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 4,
    }
    events = sse_events((await h.client.post("/v1/chat/completions", json=body)).text)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    usage = usage_chunk["usage"]
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + 4
    assert events[-3]["choices"][0]["finish_reason"] == "length"


async def test_completion_and_streamed_completion(h: Harness) -> None:
    body = {"model": "fake:2", "prompt": "Once upon", "max_tokens": 50, "temperature": 0}
    result = (await h.client.post("/v1/completions", json=body)).json()
    assert result["id"].startswith("cmpl-")
    assert result["object"] == "text_completion"
    assert result["choices"][0]["text"] == REPLY
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens"] == len("Once upon") + 1  # BOS

    body |= {"stream": True, "stream_options": {"include_usage": True}}
    events = sse_events((await h.client.post("/v1/completions", json=body)).text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == REPLY
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "text_completion" for c in chunks)
    streamed_usage = events[-2]["usage"]
    # The same prompt again: all but its last token come from the prefix cache.
    cached = streamed_usage.pop("prompt_tokens_details")["cached_tokens"]
    assert cached == result["usage"]["prompt_tokens"] - 1
    assert result["usage"].pop("prompt_tokens_details") == {"cached_tokens": 0}
    assert streamed_usage == result["usage"]


async def test_completion_default_is_sixteen_tokens(h: Harness) -> None:
    result = (await h.client.post("/v1/completions", json={"prompt": "x"})).json()
    assert result["usage"]["completion_tokens"] == 16
    assert result["choices"][0]["finish_reason"] == "length"


async def test_completion_runs_to_context_end_as_length(h: Harness) -> None:
    body = {"prompt": "x", "max_tokens": None, "ignore_eos": True}
    result = (await h.client.post("/v1/completions", json=body)).json()
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["total_tokens"] == 256


def make_request(headers: dict[str, str], client: tuple[str, int] | None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "headers": raw, "client": client})


def test_caller_identity_is_the_fairness_key() -> None:
    key = caller_identity(make_request({"Authorization": "Bearer sk-secret"}, ("10.0.0.7", 1)))
    assert key.startswith("key:") and "sk-secret" not in key
    assert key == caller_identity(make_request({"authorization": "bearer sk-secret"}, None))
    assert key != caller_identity(make_request({"Authorization": "Bearer other"}, None))
    assert caller_identity(make_request({}, ("10.0.0.7", 1))) == "addr:10.0.0.7"
    assert caller_identity(make_request({"Authorization": "Basic x"}, ("::1", 1))) == "addr:::1"


# -- errors -----------------------------------------------------------------------------


async def test_malformed_json(h: Harness) -> None:
    response = await h.client.post(
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    error = assert_error(response, 400, type="invalid_request_error")
    assert "not valid JSON" in error["message"]


async def test_body_that_is_not_an_object(h: Harness) -> None:
    for content in (b"[]", b"", b"a=b"):
        response = await h.client.post("/v1/completions", content=content)
        assert_error(response, 400, type="invalid_request_error")


async def test_unknown_field(h: Harness) -> None:
    response = await h.client.post("/v1/chat/completions", json={"messages": HI, "tempreture": 1})
    error = assert_error(response, 400, param="tempreture")
    assert "tempreture" in error["message"]


async def test_validation_errors_are_400_naming_the_field(h: Harness) -> None:
    cases = [
        ({"messages": HI, "temperature": -1}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": HI, "n": 9}, "n"),
        ({"messages": HI, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"messages": HI, "tools": [{"type": "function"}]}, "tools[0].function"),
        ({"messages": HI, "tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"messages": HI, "response_format": {"type": "xml"}}, "response_format.type"),
    ]
    for body, param in cases:
        response = await h.client.post("/v1/chat/completions", json=body)
        assert_error(response, 400, param=param, type="invalid_request_error")
    for prompt in ([], [100_000], [[5, 6], [-1]]):  # empty; ids outside the vocabulary
        response = await h.client.post("/v1/completions", json={"prompt": prompt})
        assert_error(response, 400, param="prompt")


async def test_unknown_model_is_404(h: Harness) -> None:
    response = await h.client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": HI})
    error = assert_error(response, 404, code="model_not_found", param="model")
    assert "gpt-9" in error["message"]


async def test_prompt_too_long_is_400_context_length_exceeded(h: Harness) -> None:
    response = await h.client.post("/v1/completions", json={"prompt": "x" * 300})
    assert_error(response, 400, code="context_length_exceeded", type="invalid_request_error")
    body = {"prompt": "x", "max_tokens": 1000}
    assert_error(await h.client.post("/v1/completions", json=body), 400)


async def test_unknown_route_and_method(h: Harness) -> None:
    error = assert_error(await h.client.get("/v1/nothing"), 404, type="invalid_request_error")
    assert "/v1/nothing" in error["message"]
    response = await h.client.get("/v1/chat/completions")
    assert_error(response, 405)
    assert "POST" in response.headers["allow"]


async def test_queue_full_is_429_with_retry_after(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_running=1, max_waiting=0) as h:
        service = h.app.state.completions
        held = await service.complete(model=None, prompt="hold", params=SamplingParams())
        try:
            for path, body in [
                ("/v1/completions", {"prompt": "x"}),
                ("/v1/chat/completions", {"messages": HI, "stream": True}),
            ]:
                response = await h.client.post(path, json=body)
                assert_error(response, 429, type="rate_limit_error", code="queue_full")
                assert int(response.headers["retry-after"]) >= 1
        finally:
            await held.stream.aclose()
        response = await h.client.post("/v1/completions", json={"prompt": "x"})
        assert response.status_code == 200


async def test_engine_failure_before_and_after_headers(tmp_path: Path) -> None:
    async with running_app(tmp_path, fail_on_call=3) as h:
        # Calls 1-2 produce "He", call 3 fails: the stream ends with one error event.
        body = {"messages": HI, "stream": True}
        events = sse_events((await h.client.post("/v1/chat/completions", json=body)).text)
        assert events[-1] == "[DONE]"
        assert events[-2]["error"]["type"] == "server_error"
        assert events[-2]["error"]["code"] == "engine_error"
        text = "".join(
            e["choices"][0]["delta"].get("content", "") for e in events[:-2] if e.get("choices")
        )
        assert REPLY.startswith(text)
        # The engine survives a failed step: the next request works.
        response = await h.client.post("/v1/chat/completions", json={"messages": HI})
        assert response.json()["choices"][0]["message"]["content"] == REPLY

    async with running_app(tmp_path, fail_on_call=1) as h:
        response = await h.client.post("/v1/chat/completions", json={"messages": HI})
        assert_error(response, 500, type="server_error", code="engine_error")


async def test_unexpected_exception_is_500_in_the_same_shape(tmp_path: Path) -> None:
    async with running_app(tmp_path, raise_app_exceptions=False) as h:

        @h.app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals")

        response = await h.client.get("/boom")
        error = assert_error(response, 500, type="server_error")
        assert "secret" not in error["message"]


# -- disconnects abort the generation ----------------------------------------------------


def slow_reply(delay: float) -> Callable[[list[int]], str]:
    """A reply callback that takes ``delay`` seconds per token (called once per token)."""

    def reply(_prompt: list[int]) -> str:
        time.sleep(delay)
        return "abcdefghij"

    return reply


@pytest.mark.parametrize("stream", [True, False])
async def test_client_disconnect_aborts_the_generation(tmp_path: Path, stream: bool) -> None:
    async with running_app(tmp_path, reply=slow_reply(0.01)) as h:
        body = {"messages": HI, "max_tokens": 200, "ignore_eos": True, "stream": stream}
        sent = await call_and_disconnect(
            h.app, "/v1/chat/completions", body, after_chunks=2 if stream else 0
        )
        engine = h.models.loaded_models()[0].engine
        assert engine.num_in_flight == 0
        await wait_until(lambda: engine.stats.running == 0)  # the abort freed the slot
        assert len(h.backend.calls) < 100  # far from the 200 tokens asked for
        if not stream:
            assert sent[0]["status"] == 499

        # The server keeps serving.
        response = await h.client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3})
        assert response.json()["choices"][0]["text"] == "abc"


async def test_waiting_request_sends_no_queue_updates(tmp_path: Path) -> None:
    async with running_app(tmp_path, max_running=1, reply=slow_reply(0.002)) as h:
        body = {"messages": HI, "stream": True, "max_tokens": 8}
        first, second = await asyncio.gather(
            h.client.post("/v1/chat/completions", json=body),
            h.client.post("/v1/chat/completions", json=body),
        )
        for response in (first, second):
            chunks = sse_events(response.text)[:-1]
            assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            middle, last = chunks[1:-1], chunks[-1]
            assert all(c["choices"][0]["delta"]["content"] for c in middle)
            assert last["choices"][0]["finish_reason"] == "length"
            text = "".join(c["choices"][0]["delta"]["content"] for c in middle)
            assert text == "abcdefgh"
