"""The official ``anthropic`` client, unchanged, against a real server and SmolLM2.

Greedy decoding throughout; the assertions are about properties (stop reasons, token
counts, stop sequences, streamed text equal to the final message), never about the prose.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from anthropic import Anthropic

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = "smollm2:135m"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
# anthropic 2.x has no temperature argument any more (newer Claude models take none), but
# the API still does, and ollm honours it: greedy decoding keeps these tests repeatable.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[Anthropic]:
    # The client adds /v1/messages itself; the key is any string while auth is off.
    with Anthropic(base_url=live_server, api_key="anything", max_retries=0) as c:
        yield c


def test_create(client: Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=48,
        extra_body=GREEDY,
        system="You are a helpful assistant.",
        messages=QUESTION,
    )
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    (block,) = message.content
    assert block.type == "text" and block.text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.stop_sequence is None
    assert 0 < message.usage.output_tokens <= 48
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 5


def test_stream_pieces_join_to_the_final_message(client: Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=48, extra_body=GREEDY, messages=QUESTION
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 3, pieces
    (block,) = final.content
    assert block.type == "text"
    assert "".join(pieces) == block.text and block.text.strip()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert 0 < final.usage.output_tokens <= 48
    # The same greedy request, not streamed, says the same.
    again = client.messages.create(model=MODEL, max_tokens=48, extra_body=GREEDY, messages=QUESTION)
    assert again.content[0].type == "text" and again.content[0].text == block.text


def test_count_tokens_is_the_prompt_the_model_sees(client: Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=QUESTION)
    assert counted.input_tokens > 5
    message = client.messages.create(
        model=MODEL, max_tokens=4, extra_body=GREEDY, messages=QUESTION
    )
    usage = message.usage
    assert usage.input_tokens + (usage.cache_read_input_tokens or 0) == counted.input_tokens
    follow_up = [
        *QUESTION,
        {"role": "assistant", "content": "Red, green and blue."},
        {"role": "user", "content": "And two more?"},
    ]
    longer = client.messages.count_tokens(model=MODEL, messages=follow_up)
    assert longer.input_tokens > counted.input_tokens


def test_max_tokens_stop(client: Anthropic) -> None:
    message = client.messages.create(
        model=MODEL, max_tokens=3, extra_body=GREEDY, messages=QUESTION
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_stop_sequence_stop(client: Anthropic) -> None:
    free = client.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=QUESTION)
    assert free.content[0].type == "text"
    text = free.content[0].text
    words = [w.strip(".,:;!?*") for w in text.split()[2:]]
    stop = next(w for w in words if len(w) >= 3)  # a word the greedy reply surely writes
    for streamed in (False, True):
        if streamed:
            with client.messages.stream(
                model=MODEL,
                max_tokens=40,
                extra_body=GREEDY,
                messages=QUESTION,
                stop_sequences=[stop],
            ) as stream:
                message = stream.get_final_message()
        else:
            message = client.messages.create(
                model=MODEL,
                max_tokens=40,
                extra_body=GREEDY,
                messages=QUESTION,
                stop_sequences=[stop],
            )
        assert message.stop_reason == "stop_sequence", (streamed, stop, message)
        assert message.stop_sequence == stop
        assert message.content[0].type == "text"
        assert message.content[0].text == text[: text.index(stop)]


def test_errors_raise_the_sdks_exceptions(client: Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(
            model=MODEL, max_tokens=8, messages=QUESTION, extra_body={"temperature": 1.5}
        )
    assert bad.value.status_code == 400
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model:1b", max_tokens=8, messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError, match="image"):
        client.messages.create(
            model=MODEL,
            max_tokens=8,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        }
                    ],
                }
            ],
        )


# -- tools, with the bundled model that can call them ----------------------------------------

TOOL_MODEL = "qwen2.5-coder:0.5b"
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's name."}},
        "required": ["city"],
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
FORCED = {"type": "tool", "name": "get_weather"}


def test_tool_round_trip(client: Anthropic) -> None:
    message = client.messages.create(
        model=TOOL_MODEL,
        max_tokens=100,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice=FORCED,
        extra_body=GREEDY,
    )
    assert message.stop_reason == "tool_use"
    calls = [block for block in message.content if block.type == "tool_use"]
    assert len(calls) == 1
    call = calls[0]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert isinstance(call.input, dict) and isinstance(call.input.get("city"), str)

    # Streamed, the same greedy call arrives as input_json_delta and reassembles alike.
    with client.messages.stream(
        model=TOOL_MODEL,
        max_tokens=100,
        messages=ASK_WEATHER,
        tools=[WEATHER],
        tool_choice=FORCED,
        extra_body=GREEDY,
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    streamed = [block for block in final.content if block.type == "tool_use"]
    assert [(b.name, b.input) for b in streamed] == [(call.name, call.input)]

    # The result goes back as a tool_result block; the model answers in text.
    answer = client.messages.create(
        model=TOOL_MODEL,
        max_tokens=60,
        tools=[WEATHER],
        extra_body=GREEDY,
        messages=[
            *ASK_WEATHER,
            {"role": "assistant", "content": message.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": "18 °C and sunny"}
                ],
            },
        ],
    )
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert answer.content and answer.usage.output_tokens > 0
