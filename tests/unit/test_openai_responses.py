"""``/v1/responses`` over the fake backend: the response object, streaming events and their
sequence numbers, function tools, storage (retrieve, delete, input items), chaining with
previous_response_id, per-owner isolation, and every validation error in OpenAI's shape.
The official ``openai`` client parses what the server sends, over ASGI."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from api_v1_harness import signup, v1_app
from asgi_helpers import Harness, call_and_disconnect, running_app, wait_until
from openai import AsyncOpenAI

from ollm.backends.base import ModelFacts

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REPLY = "Hello from the fake model."
TOOLS_TEMPLATE = (
    "{% if tools %}<|tools|>{{ tools | tojson }}\n{% endif %}"
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
    "{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}"
    "{% if m.tool_call_id %}[{{ m.tool_call_id }}:{{ m.name }}]{% endif %};{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


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
    """A fake reply that records each prompt (as text) and answers ``answer``."""

    def __init__(self, answer: str = "ok") -> None:
        self.seen: list[str] = []
        self.answer = answer

    def __call__(self, tokens: list[int]) -> str:
        text = prompt_text(tokens)
        if not self.seen or self.seen[-1] != text:  # called once per generated token
            self.seen.append(text)
        return self.answer

    @property
    def last(self) -> str:
        return self.seen[-1]


def tool_facts() -> ModelFacts:
    return ModelFacts(
        vocab_size=258, context_train=4096, bos_text="<s>", eos_text="</s>",
        chat_template=TOOLS_TEMPLATE,
    )  # fmt: skip


def named_events(body: str) -> list[dict[str, Any]]:
    """A Responses SSE body as payloads; each ``event:`` line names its payload's type."""
    assert body.endswith("\n\n"), body[-80:]
    events = []
    for block in body.strip("\n").split("\n\n"):
        name_line, data_line = block.split("\n")
        payload = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {payload['type']}", block
        events.append(payload)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def assert_error(response: httpx.Response, status: int, **expected: Any) -> dict[str, Any]:
    """OpenAI's error shape, exactly."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    for key, value in expected.items():
        assert error[key] == value, (key, error)
    return error


def sdk(app: Any) -> AsyncOpenAI:
    """The official client, talking to the app over ASGI."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost")
    return AsyncOpenAI(
        base_url="http://localhost/v1", api_key="anything", http_client=http, max_retries=0
    )


async def create(h: Harness, **body: Any) -> dict[str, Any]:
    response = await h.client.post("/v1/responses", json={"model": "fake:1", **body})
    assert response.status_code == 200, response.text
    return response.json()


# -- the response object --------------------------------------------------------------------


async def test_response_shape(h: Harness) -> None:
    before = int(time.time())
    body = await create(h, input="hi")
    assert body["id"].startswith("resp_")
    assert body["object"] == "response"
    assert body["created_at"] >= before
    assert body["status"] == "completed"
    assert body["incomplete_details"] is None and body["error"] is None
    assert body["model"] == "fake:1"
    (message,) = body["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": REPLY, "annotations": [], "logprobs": []}
    ]
    usage = body["usage"]
    assert usage["output_tokens"] == len(REPLY)  # one byte per token
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] >= 0
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    # OpenAI's defaults, echoed.
    assert body["temperature"] == 1.0 and body["top_p"] == 1.0
    assert body["tools"] == [] and body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True
    assert body["text"]["format"] == {"type": "text"}
    assert body["store"] is True and body["previous_response_id"] is None
    assert body["metadata"] == {} and body["instructions"] is None


async def test_request_settings_are_echoed(h: Harness) -> None:
    body = await create(
        h,
        input="hi",
        instructions="Be brief.",
        temperature=0,
        top_p=0.5,
        max_output_tokens=64,
        metadata={"k": "v"},
        user="someone",
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
        truncation="disabled",
        prompt_cache_key="abc",
        service_tier="auto",
    )
    assert body["instructions"] == "Be brief."
    assert body["temperature"] == 0 and body["top_p"] == 0.5
    assert body["max_output_tokens"] == 64
    assert body["metadata"] == {"k": "v"} and body["user"] == "someone"
    assert body["reasoning"]["effort"] == "low"


async def test_instructions_are_a_system_message(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, reply=prompts) as h:
        await create(h, input="hi", instructions="Answer in French.")
    assert prompts.last == "<|system|>Answer in French.\n<|user|>hi\n<|assistant|>"


async def test_item_input(tmp_path: Path) -> None:
    prompts = Prompts()
    items = [
        {"role": "developer", "content": "Rules."},
        {"role": "user", "content": [{"type": "input_text", "text": "first"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "an answer", "annotations": []}],
        },
        {"type": "message", "role": "user", "content": "second"},
    ]
    async with running_app(tmp_path, reply=prompts) as h:
        await create(h, input=items)
    assert prompts.last == (
        "<|system|>Rules.\n<|user|>first\n<|assistant|>an answer\n<|user|>second\n<|assistant|>"
    )


async def test_max_output_tokens_makes_it_incomplete(h: Harness) -> None:
    body = await create(h, input="hi", max_output_tokens=5)
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    (message,) = body["output"]
    assert message["status"] == "incomplete"
    assert message["content"][0]["text"] == REPLY[:5]
    assert body["usage"]["output_tokens"] == 5


async def test_json_schema_format_constrains_the_engine(h: Harness) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    text = {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}}
    body = await create(h, input="hi", text=text)
    assert body["text"]["format"]["schema"] == schema
    sampled = [i for call in h.backend.calls for i in call if i.sampler is not None]
    assert sampled[-1].sampler.params.json_output.schema == schema
    await create(h, input="hi", text={"format": {"type": "json_object"}})
    sampled = [i for call in h.backend.calls for i in call if i.sampler is not None]
    assert sampled[-1].sampler.params.json_output.schema is None


# -- streaming --------------------------------------------------------------------------------


async def test_stream_event_order(h: Harness) -> None:
    response = await h.client.post(
        "/v1/responses", json={"model": "fake:1", "input": "hi", "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = named_events(response.text)
    kinds = [e["type"] for e in events]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) >= 1
    # Consecutive deltas collapse to one entry to compare the order.
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    assert collapsed == STREAM_ORDER
    created, in_progress = events[0]["response"], events[1]["response"]
    assert created["status"] == in_progress["status"] == "in_progress"
    assert created["output"] == [] and created["usage"] is None
    item_id = events[2]["item"]["id"]
    assert all(d["item_id"] == item_id and d["output_index"] == 0 for d in deltas)
    text = "".join(d["delta"] for d in deltas)
    assert text == REPLY
    assert next(e for e in events if e["type"] == "response.output_text.done")["text"] == REPLY
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["id"] == created["id"]
    assert final["output"][0]["id"] == item_id
    assert final["output"][0]["content"][0]["text"] == REPLY
    assert final["usage"]["output_tokens"] == len(REPLY)
    # Stored as it was sent last.
    stored = (await h.client.get(f"/v1/responses/{final['id']}")).json()
    assert stored == final


async def test_stream_ends_incomplete_at_the_token_limit(h: Harness) -> None:
    body = {"model": "fake:1", "input": "hi", "stream": True, "max_output_tokens": 4}
    events = named_events((await h.client.post("/v1/responses", json=body)).text)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    done = next(e for e in events if e["type"] == "response.output_item.done")
    assert done["item"]["status"] == "incomplete"
    assert done["item"]["content"][0]["text"] == REPLY[:4]


async def test_engine_failure_mid_stream_is_an_error_event(tmp_path: Path) -> None:
    async with running_app(tmp_path, fail_on_call=3) as h:
        body = {"model": "fake:1", "input": "hi", "stream": True}
        response = await h.client.post("/v1/responses", json=body)
        events = named_events(response.text)
        assert events[0]["type"] == "response.created"
        assert events[-1]["type"] == "error"
        assert events[-1]["code"] == "engine_error" and events[-1]["message"]
        # A failed response is not stored.
        response_id = events[0]["response"]["id"]
        assert_error(await h.client.get(f"/v1/responses/{response_id}"), 404)


async def test_client_leaving_mid_stream_aborts_and_stores_nothing(tmp_path: Path) -> None:
    def slow_reply(_prompt: list[int]) -> str:
        time.sleep(0.01)  # called once per generated token
        return "x" * 300

    async with running_app(tmp_path, context=1024, reply=slow_reply) as h:
        body = {"model": "fake:1", "input": "hi", "stream": True}
        sent = await call_and_disconnect(h.app, "/v1/responses", body, after_chunks=5)
        engine = h.models.loaded_models()[0].engine
        await wait_until(lambda: engine.stats.running == 0)  # the abort freed the slot
        assert len(h.backend.calls) < 150  # far from the 300 tokens of the reply
        first = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        created = json.loads(first.split(b"\n")[1].removeprefix(b"data: "))
        assert created["type"] == "response.created"
        # Cut short, it was never stored; the server keeps serving.
        response_id = created["response"]["id"]
        assert_error(await h.client.get(f"/v1/responses/{response_id}"), 404)
        assert (await create(h, input="hi", max_output_tokens=3))["status"] == "incomplete"


# -- the official client parses it -----------------------------------------------------------


async def test_openai_client_round_trip(h: Harness) -> None:
    async with sdk(h.app) as client:
        first = await client.responses.create(model="fake:1", input="hi", temperature=0)
        assert first.output_text == REPLY
        assert first.status == "completed"
        assert first.usage is not None and first.usage.output_tokens == len(REPLY)

        stream = await client.responses.create(
            model="fake:1", input="again", previous_response_id=first.id, stream=True
        )
        events = [event async for event in stream]
        kinds = [event.type for event in events]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas == events[-1].response.output_text == REPLY
        assert events[-1].response.previous_response_id == first.id

        async with client.responses.stream(model="fake:1", input="helper") as helper:
            text = "".join(
                [e.delta async for e in helper if e.type == "response.output_text.delta"]
            )
            final = await helper.get_final_response()
        assert text == final.output_text == REPLY

        again = await client.responses.retrieve(first.id)
        assert again.id == first.id and again.output_text == REPLY
        items = await client.responses.input_items.list(first.id)
        assert [item.type for item in items.data] == ["message"]
        assert items.data[0].content[0].text == "hi"
        assert await client.responses.delete(first.id) is None
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(first.id)
        with pytest.raises(openai.BadRequestError):
            await client.responses.create(
                model="fake:1", input="hi", tools=[{"type": "web_search"}]
            )


# -- storage ---------------------------------------------------------------------------------


async def test_retrieve_and_delete(h: Harness) -> None:
    body = await create(h, input="hi")
    stored = await h.client.get(f"/v1/responses/{body['id']}")
    assert stored.status_code == 200 and stored.json() == body
    deleted = await h.client.delete(f"/v1/responses/{body['id']}")
    assert deleted.json() == {"id": body["id"], "object": "response", "deleted": True}
    missing = assert_error(
        await h.client.get(f"/v1/responses/{body['id']}"), 404, code="response_not_found"
    )
    assert body["id"] in missing["message"]
    assert_error(await h.client.delete(f"/v1/responses/{body['id']}"), 404)
    assert_error(await h.client.get("/v1/responses/resp_nope/input_items"), 404)


async def test_store_false_keeps_nothing(h: Harness) -> None:
    body = await create(h, input="hi", store=False)
    assert body["store"] is False
    assert_error(await h.client.get(f"/v1/responses/{body['id']}"), 404)
    follow_up = await h.client.post(
        "/v1/responses", json={"input": "more", "previous_response_id": body["id"]}
    )
    assert_error(follow_up, 404, param="response_id")


async def test_retrieve_cannot_replay_a_stream(h: Harness) -> None:
    body = await create(h, input="hi")
    response = await h.client.get(f"/v1/responses/{body['id']}", params={"stream": "true"})
    assert_error(response, 400, param="stream")


async def test_input_items_pages(h: Harness) -> None:
    items = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    body = await create(h, input=items)
    url = f"/v1/responses/{body['id']}/input_items"
    page = (await h.client.get(url)).json()
    assert page["object"] == "list" and page["has_more"] is False
    texts = [item["content"][0]["text"] for item in page["data"]]
    assert texts == [f"message {i}" for i in reversed(range(5))]  # newest first, as OpenAI
    assert all(item["id"].startswith("msg_") for item in page["data"])
    first = (await h.client.get(url, params={"order": "asc", "limit": 2})).json()
    assert [i["content"][0]["text"] for i in first["data"]] == ["message 0", "message 1"]
    assert first["has_more"] is True and first["last_id"] == first["data"][1]["id"]
    rest = (await h.client.get(url, params={"order": "asc", "after": first["last_id"]})).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == [f"message {i}" for i in (2, 3, 4)]
    assert rest["has_more"] is False
    assert_error(await h.client.get(url, params={"after": "msg_nope"}), 400, param="after")
    assert_error(await h.client.get(url, params={"limit": 0}), 400)


# -- previous_response_id ---------------------------------------------------------------------


async def test_previous_response_id_continues_the_conversation(tmp_path: Path) -> None:
    async with v1_app(tmp_path, numbered_replies=True, context=1024) as h:
        first = (
            await h.client.post(
                "/v1/responses", json={"input": "My name is Ada.", "instructions": "Be kind."}
            )
        ).json()
        second = (
            await h.client.post(
                "/v1/responses",
                json={"input": "What is my name?", "previous_response_id": first["id"]},
            )
        ).json()
        assert second["previous_response_id"] == first["id"]
        third = await h.client.post(
            "/v1/responses",
            json={
                "input": "And again?",
                "previous_response_id": second["id"],
                "instructions": "Be terse.",
            },
        )
        assert third.status_code == 200, third.text
        prompts = h.backend.prompts
    assert prompts[0] == "<|system|>Be kind.\n<|user|>My name is Ada.\n<|assistant|>"
    # The earlier turns, with the replies the model gave; instructions are not carried over.
    assert prompts[1] == (
        "<|user|>My name is Ada.\n<|assistant|>reply number 1\n"
        "<|user|>What is my name?\n<|assistant|>"
    )
    assert prompts[2] == (
        "<|system|>Be terse.\n<|user|>My name is Ada.\n<|assistant|>reply number 1\n"
        "<|user|>What is my name?\n<|assistant|>reply number 2\n"
        "<|user|>And again?\n<|assistant|>"
    )


async def test_chain_survives_a_deleted_link(tmp_path: Path) -> None:
    async with v1_app(tmp_path, numbered_replies=True, context=1024) as h:
        first = (await h.client.post("/v1/responses", json={"input": "one"})).json()
        second = (
            await h.client.post(
                "/v1/responses", json={"input": "two", "previous_response_id": first["id"]}
            )
        ).json()
        await h.client.delete(f"/v1/responses/{first['id']}")
        third = await h.client.post(
            "/v1/responses", json={"input": "three", "previous_response_id": second["id"]}
        )
        assert third.status_code == 200, third.text
        assert h.backend.prompts[-1] == (
            "<|user|>two\n<|assistant|>reply number 2\n<|user|>three\n<|assistant|>"
        )


async def test_unknown_previous_response_is_404(h: Harness) -> None:
    response = await h.client.post(
        "/v1/responses", json={"input": "hi", "previous_response_id": "resp_nope"}
    )
    assert_error(response, 404, code="response_not_found", param="response_id")


# -- owners -----------------------------------------------------------------------------------


async def test_responses_belong_to_their_owner(tmp_path: Path) -> None:
    async with v1_app(tmp_path, auth=True) as h:
        assert_error(await h.client.post("/v1/responses", json={"input": "hi"}), 401)
        await signup(h.client, "alice")
        mine = (await h.client.post("/v1/responses", json={"input": "secret"})).json()
        assert mine["status"] == "completed"
        async with h.new_client() as bob:
            await signup(bob, "bob")
            for response in (
                await bob.get(f"/v1/responses/{mine['id']}"),
                await bob.get(f"/v1/responses/{mine['id']}/input_items"),
                await bob.delete(f"/v1/responses/{mine['id']}"),
                await bob.post(
                    "/v1/responses", json={"input": "tell", "previous_response_id": mine["id"]}
                ),
            ):
                error = assert_error(response, 404)
                assert "secret" not in response.text and error["code"] == "response_not_found"
            theirs = (await bob.post("/v1/responses", json={"input": "hello"})).json()
        assert (await h.client.get(f"/v1/responses/{mine['id']}")).status_code == 200
        assert_error(await h.client.get(f"/v1/responses/{theirs['id']}"), 404)
        # Bob's prompt never saw Alice's turn.
        assert not any("secret" in p for p in h.backend.prompts[1:])


# -- function tools ---------------------------------------------------------------------------


async def test_function_call_output_item(tmp_path: Path) -> None:
    prompts = Prompts(CALL)
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=prompts) as h:
        body = await create(h, input="Weather in Paris?", tools=[WEATHER])
    assert prompts.last.startswith("<|tools|>")  # the tools went through the template
    (call,) = body["output"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert call["id"].startswith("fc_") and call["call_id"].startswith("call_")
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert body["tools"] == [{**WEATHER, "strict": True}]


async def test_text_then_call(tmp_path: Path) -> None:
    reply = "Let me look. " + CALL
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: reply) as h:
        body = await create(h, input="Weather?", tools=[WEATHER])
        kinds = [item["type"] for item in body["output"]]
        assert kinds == ["message", "function_call"]
        assert body["output"][0]["content"][0]["text"] == "Let me look."
        streamed = await h.client.post(
            "/v1/responses",
            json={"model": "fake:1", "input": "Weather?", "tools": [WEATHER], "stream": True},
        )
    events = named_events(streamed.text)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.strip() == "Let me look." and "<tool_call>" not in text
    added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
    assert [item["type"] for item in added] == ["message", "function_call"]
    assert added[1]["arguments"] == "" and added[1]["status"] == "in_progress"
    arguments = [e for e in events if e["type"].startswith("response.function_call_arguments")]
    assert [e["type"] for e in arguments] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ]
    assert all(e["output_index"] == 1 and e["item_id"] == added[1]["id"] for e in arguments)
    assert json.loads(arguments[1]["arguments"]) == {"city": "Paris"}
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == arguments[1]["arguments"]


async def test_function_call_round_trip(tmp_path: Path) -> None:
    prompts = Prompts("It is sunny.")
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=prompts) as h:
        body = await create(h, input=history, tools=[WEATHER])
    assert body["output"][0]["content"][0]["text"] == "It is sunny."
    assert '"name": "get_weather"' in prompts.last and '"city": "Paris"' in prompts.last
    # The result names the function its call id belongs to.
    assert "<|tool|>sunny[call_1:get_weather];" in prompts.last


async def test_call_then_result_via_previous_response_id(tmp_path: Path) -> None:
    replies = iter([CALL, "It is sunny."])
    current = {"reply": next(replies)}
    seen: list[str] = []

    def reply(tokens: list[int]) -> str:
        seen.append(prompt_text(tokens))
        return current["reply"]

    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=reply) as h:
        first = await create(h, input="Weather in Paris?", tools=[WEATHER])
        (call,) = first["output"]
        current["reply"] = next(replies)
        result = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
        second = await create(h, input=[result], tools=[WEATHER], previous_response_id=first["id"])
    assert second["output"][0]["content"][0]["text"] == "It is sunny."
    assert f"[{call['call_id']}:get_weather]" in seen[-1]


async def test_parallel_tool_calls_false_keeps_one_call(tmp_path: Path) -> None:
    two = CALL + CALL.replace("Paris", "Rome")
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=lambda _p: two) as h:
        both = await create(h, input="Weather?", tools=[WEATHER])
        one = await create(h, input="Weather?", tools=[WEATHER], parallel_tool_calls=False)
    assert [item["type"] for item in both["output"]] == ["function_call", "function_call"]
    assert [json.loads(item["arguments"])["city"] for item in one["output"]] == ["Paris"]
    assert one["parallel_tool_calls"] is False


async def test_tool_choice_none_hides_the_tools(tmp_path: Path) -> None:
    prompts = Prompts()
    async with running_app(tmp_path, context=1024, facts=tool_facts(), reply=prompts) as h:
        body = await create(h, input="hi", tools=[WEATHER], tool_choice="none")
        named = await create(
            h, input="hi", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
        )
    assert "<|tools|>" not in prompts.seen[0]
    assert body["tool_choice"] == "none"
    assert named["tool_choice"] == {"type": "function", "name": "get_weather"}


async def test_tools_need_a_model_that_supports_them(h: Harness) -> None:
    response = await h.client.post("/v1/responses", json={"input": "hi", "tools": [WEATHER]})
    assert_error(response, 400, param="tools")


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "hi", "frobnicate": 1}, "frobnicate", "Unrecognized"),
        ({}, "input", "Missing"),
        ({"input": []}, "input", "empty"),
        ({"input": "hi", "temperature": 3}, "temperature", "temperature"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens", "max_output_tokens"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0]", "not supported"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            None,
            "content part type is not supported",
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]},
            None,
            "JSON object",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, None, "call_id"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools", "only 'function'"),
        ({"input": "hi", "tools": [{"type": "function"}]}, None, "name"),
        ({"input": "hi", "tool_choice": {"type": "file_search"}}, "tool_choice", "not supported"),
        ({"input": "hi", "text": {"format": {"type": "json_schema"}}}, None, "schema"),
        ({"input": "hi", "reasoning": {"summary": "auto"}}, None, "not supported"),
        ({"input": "hi", "background": True}, "background", "not supported"),
        ({"input": "hi", "truncation": "auto"}, "truncation", "not supported"),
        ({"input": "hi", "top_logprobs": 2}, "top_logprobs", "not supported"),
        ({"input": "hi", "conversation": "conv_1"}, "conversation", "not supported"),
        ({"input": "hi", "stream_options": {}}, "stream_options", "stream"),
        ({"input": "hi", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16"),
    ],
)
async def test_bad_requests_are_400s(
    h: Harness, body: dict[str, Any], param: str | None, words: str
) -> None:
    response = await h.client.post("/v1/responses", json=body)
    error = assert_error(response, 400, type="invalid_request_error")
    assert words in error["message"], error
    if param is not None:
        assert error["param"] == param, error


async def test_unknown_model_is_404(h: Harness) -> None:
    response = await h.client.post("/v1/responses", json={"model": "nope:1", "input": "hi"})
    assert_error(response, 404, code="model_not_found")


async def test_too_long_input_is_400(h: Harness) -> None:
    response = await h.client.post("/v1/responses", json={"input": "x" * 5000})
    assert_error(response, 400, code="context_length_exceeded")
