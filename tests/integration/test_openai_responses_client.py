"""The official ``openai`` client's Responses API against a real server and the bundled
models: create, stream, previous_response_id, retrieve, delete, and a function-tool round
trip. Greedy decoding; the assertions are about properties, never about the prose."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHAT_MODEL = "smollm2:135m"
TOOL_MODEL = "qwen2.5-coder:0.5b"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's name."}},
        "required": ["city"],
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{live_server}/v1", api_key="anything", max_retries=0) as c:
        yield c


def test_create(client: OpenAI) -> None:
    response = client.responses.create(
        model=CHAT_MODEL,
        input="Name three colours of the rainbow.",
        instructions="You are a helpful assistant.",
        temperature=0,
        max_output_tokens=48,
    )
    assert response.id.startswith("resp_")
    assert response.model == CHAT_MODEL
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.output[0].type == "message"
    usage = response.usage
    assert usage is not None and 0 < usage.output_tokens <= 48
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens"


def test_token_limit_makes_it_incomplete(client: OpenAI) -> None:
    response = client.responses.create(
        model=CHAT_MODEL, input="Write a long story.", temperature=0, max_output_tokens=16
    )
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16


def test_stream_deltas_join_to_the_final_text(client: OpenAI) -> None:
    kwargs = {"model": CHAT_MODEL, "input": "Say hello.", "temperature": 0, "max_output_tokens": 32}
    stream = client.responses.create(**kwargs, stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) > 1
    final = events[-1].response
    assert "".join(deltas) == final.output_text
    # Greedy: the same text as without streaming.
    assert final.output_text == client.responses.create(**kwargs).output_text


def test_previous_response_id_carries_the_conversation(client: OpenAI) -> None:
    first = client.responses.create(
        model=CHAT_MODEL,
        input="My name is Ada. Please remember it.",
        temperature=0,
        max_output_tokens=32,
    )
    question = "What is my name?"
    second = client.responses.create(
        model=CHAT_MODEL,
        input=question,
        previous_response_id=first.id,
        temperature=0,
        max_output_tokens=32,
    )
    alone = client.responses.create(
        model=CHAT_MODEL, input=question, temperature=0, max_output_tokens=32
    )
    assert second.previous_response_id == first.id
    assert second.output_text.strip()
    # The second prompt holds the first turn: its question and the reply the model gave.
    grown = second.usage.input_tokens - alone.usage.input_tokens
    assert grown >= first.usage.output_tokens + 5


def test_retrieve_and_delete(client: OpenAI) -> None:
    created = client.responses.create(
        model=CHAT_MODEL, input="Say hi.", temperature=0, max_output_tokens=8
    )
    again = client.responses.retrieve(created.id)
    assert again.id == created.id
    assert again.output_text == created.output_text
    items = client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    assert client.responses.delete(created.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(
            model=CHAT_MODEL, input="More.", previous_response_id=created.id, max_output_tokens=4
        )


def test_function_tool_round_trip(client: OpenAI) -> None:
    ask = "What is the weather like in Paris right now?"
    first = client.responses.create(
        model=TOOL_MODEL,
        input=ask,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
        max_output_tokens=100,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather" and call.call_id
    arguments = json.loads(call.arguments)
    assert isinstance(arguments.get("city"), str) and arguments["city"]

    # The result goes back as a function_call_output item, continuing the stored response.
    answer = client.responses.create(
        model=TOOL_MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 °C, sunny"}],
        tools=[WEATHER],
        temperature=0,
        max_output_tokens=60,
    )
    assert answer.status in ("completed", "incomplete")
    assert answer.output and answer.usage.output_tokens > 0
