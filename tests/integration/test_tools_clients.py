"""Tool calling with the bundled qwen2.5-coder:0.5b through the clients people use: the
official ``openai`` and ``ollama`` SDKs, LangChain's ``bind_tools`` and pydantic-ai's
default (tool-based) structured output, against a real server.

Greedy decoding throughout. The assertions are about the calls' structure and validity and
about the answer using the tool's result, never about the prose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import ollama
import pytest
from openai import OpenAI

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

MODEL = "qwen2.5-coder:0.5b"
GREEDY: dict[str, Any] = {"temperature": 0, "seed": 7}
WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city's name."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": WEATHER_PARAMS,
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers and return their sum.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather like in Paris right now?"}]
# A result as a JSON object: after a plain-prose result, this 0.5B model often calls the tool
# again (and again) at temperature 0; after an object it answers and stops.
RESULT = json.dumps({"temperature": 21, "unit": "celsius", "sky": "sunny"})


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{live_server}/v1", api_key="anything", max_retries=0) as c:
        yield c


def test_openai_round_trip(client: OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], max_tokens=80, **GREEDY
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_PARAMS)
    assert "paris" in arguments["city"].lower()

    answer = client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER],
        max_tokens=80,
        messages=[
            *ASK_WEATHER,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": RESULT},
        ],
        **GREEDY,
    )
    reply = answer.choices[0]
    assert reply.finish_reason == "stop" and not reply.message.tool_calls
    assert "21" in (reply.message.content or "")  # the answer uses the tool's result


def _reassemble(chunks: Any) -> tuple[str, list[tuple[str, str, dict[str, Any]]], str]:
    content, calls, reason = "", {}, ""
    for chunk in chunks:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += piece.id or ""
                if piece.function is not None:
                    call["name"] += piece.function.name or ""
                    call["arguments"] += piece.function.arguments or ""
            reason = choice.finish_reason or reason
    found = [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()]
    return content, found, reason


def test_streamed_deltas_reassemble_to_the_same_call(client: OpenAI) -> None:
    for question, tools in [
        (ASK_WEATHER, [WEATHER]),
        ([{"role": "user", "content": "Use the add tool to add 17 and 25."}], [WEATHER, ADD]),
    ]:
        request: dict[str, Any] = {
            "model": MODEL, "messages": question, "tools": tools, "max_tokens": 80, **GREEDY,
        }  # fmt: skip
        whole = client.chat.completions.create(**request).choices[0]
        content, streamed, reason = _reassemble(
            client.chat.completions.create(**request, stream=True)
        )
        assert whole.finish_reason == reason == "tool_calls"
        expected = [
            (c.function.name, json.loads(c.function.arguments))
            for c in whole.message.tool_calls or []
        ]
        assert expected and [(name, args) for _, name, args in streamed] == expected
        assert all(call_id.startswith("call_") for call_id, _, _ in streamed)
        assert content.strip() == (whole.message.content or "").strip()


PROMPTS_FOR_REQUIRED = [
    "Tell me a joke.",
    "What is 2 + 2?",
    "Weather in Tokyo in fahrenheit, please.",
    "Add 3 and 4.",
    "Hello!",
]


@pytest.mark.parametrize("prompt", PROMPTS_FOR_REQUIRED)
def test_required_tool_choice_always_gives_a_valid_call(client: OpenAI, prompt: str) -> None:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}
    choice = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        tools=[WEATHER, ADD],
        tool_choice="required",
        max_tokens=100,
        **GREEDY,
    ).choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    name = calls[0].function.name
    jsonschema.validate(json.loads(calls[0].function.arguments), schemas[name])


def test_named_tool_choice_calls_that_tool(client: OpenAI) -> None:
    choice = client.chat.completions.create(
        model=MODEL,
        messages=ASK_WEATHER,
        tools=[WEATHER, ADD],
        tool_choice={"type": "function", "function": {"name": "add"}},
        max_tokens=100,
        **GREEDY,
    ).choices[0]
    [call] = choice.message.tool_calls or []
    assert call.function.name == "add"
    jsonschema.validate(json.loads(call.function.arguments), ADD["function"]["parameters"])


# An enum and a required integer the model does not write by itself: unconstrained, it
# answers "celsius" and leaves the station out (seen with OLLM_TOOL_GRAMMAR=off).
STATION_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["kelvin_only"]},
                "station_code": {"type": "integer"},
            },
            "required": ["city", "unit", "station_code"],
        },
    },
}


@pytest.mark.parametrize(
    "prompt", ["What's the weather in Paris in celsius?", "Weather for Tokyo please"]
)
def test_auto_calls_follow_the_schema_under_the_lazy_grammar(client: OpenAI, prompt: str) -> None:
    choice = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        tools=[STATION_WEATHER],
        max_tokens=120,
        **GREEDY,
    ).choices[0]
    assert choice.finish_reason == "tool_calls", choice.message
    [call] = choice.message.tool_calls or []
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, STATION_WEATHER["function"]["parameters"])
    assert arguments["unit"] == "kelvin_only"


def test_auto_prose_stays_free_under_the_lazy_grammar(client: OpenAI) -> None:
    choice = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello to Ann in one short sentence."}],
        tools=[STATION_WEATHER],
        max_tokens=40,
        **GREEDY,
    ).choices[0]
    assert choice.finish_reason in ("stop", "length")
    assert not choice.message.tool_calls and choice.message.content


# -- the ollama client ------------------------------------------------------------------------


def test_ollama_round_trip(live_server: str) -> None:
    o = ollama.Client(host=live_server)
    assert "tools" in o.show(MODEL).capabilities
    assert "tools" not in (o.show("smollm2:135m").capabilities or [])
    options = {"temperature": 0, "seed": 7, "num_predict": 80}
    first = o.chat(model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], options=options)
    [call] = first.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments, dict)  # Ollama's arguments are an object
    jsonschema.validate(dict(call.function.arguments), WEATHER_PARAMS)

    # Streamed, the call arrives whole in one chunk.
    streamed = [
        c.message.tool_calls
        for c in o.chat(
            model=MODEL, messages=ASK_WEATHER, tools=[WEATHER], options=options, stream=True
        )
        if c.message.tool_calls
    ]
    assert [[(t.function.name, dict(t.function.arguments)) for t in s] for s in streamed] == [
        [(call.function.name, dict(call.function.arguments))]
    ]

    answer = o.chat(
        model=MODEL,
        tools=[WEATHER],
        options=options,
        messages=[
            *ASK_WEATHER,
            first.message,
            {"role": "tool", "tool_name": "get_weather", "content": RESULT},
        ],
    )
    assert answer.done_reason == "stop" and not answer.message.tool_calls
    assert "21" in answer.message.content

    with pytest.raises(ollama.ResponseError) as refused:
        o.chat(model="smollm2:135m", messages=ASK_WEATHER, tools=[WEATHER])
    assert refused.value.status_code == 400 and "does not support tools" in str(refused.value)


# -- frameworks ---------------------------------------------------------------------------------


def test_langchain_bind_tools(live_server: str) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return RESULT

    llm = ChatOpenAI(
        model=MODEL, base_url=f"{live_server}/v1", api_key="anything", temperature=0, seed=7,
        max_tokens=80, max_retries=0,
    )  # fmt: skip
    bound = llm.bind_tools([get_weather])
    question = HumanMessage("What is the weather like in Paris right now?")
    reply = bound.invoke([question])
    [call] = reply.tool_calls
    assert call["name"] == "get_weather" and "paris" in call["args"]["city"].lower()
    result = get_weather.invoke(call)  # a ToolMessage answering the call's id
    assert isinstance(result, ToolMessage) and result.tool_call_id == call["id"]
    answer = bound.invoke([question, reply, result])
    assert not answer.tool_calls and "21" in answer.content


def test_pydantic_ai_default_structured_output(live_server: str) -> None:
    from pydantic import BaseModel
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    class City(BaseModel):
        name: str
        country: str

    model = OpenAIChatModel(
        MODEL, provider=OpenAIProvider(base_url=f"{live_server}/v1", api_key="anything")
    )
    # The default output mode is a tool the model must call ("final_result").
    agent = Agent(model, output_type=City, model_settings={"temperature": 0, "seed": 7})
    result = agent.run_sync("Which city is the Eiffel Tower in?")
    assert isinstance(result.output, City)
    assert result.output.name and result.output.country
    calls = [
        part
        for message in result.all_messages()
        for part in getattr(message, "parts", [])
        if type(part).__name__ == "ToolCallPart"
    ]
    assert calls and calls[-1].tool_name.startswith("final_result")


def test_bad_tool_requests_are_400s(live_server: str) -> None:
    url = f"{live_server}/v1/chat/completions"
    bad_tool = {"type": "function", "function": {"name": "x", "parameters": "nope"}}
    for body in [
        {"model": MODEL, "messages": ASK_WEATHER, "tools": [bad_tool]},
        {"model": MODEL, "messages": ASK_WEATHER, "tool_choice": "required"},
        {"model": "smollm2:135m", "messages": ASK_WEATHER, "tools": [WEATHER]},
    ]:
        response = httpx.post(url, json=body, timeout=60)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
