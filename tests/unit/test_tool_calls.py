"""Finding tool calls in replies (every syntax, whole and streamed), the forced-call schema,
and which chat templates take tools."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest

from ollm.chat.messages import ToolSpec
from ollm.chat.template import supports_tools
from ollm.chat.tool_calls import ParsedReply, ToolCallStream, parse_tool_calls
from ollm.chat.tool_grammar import tool_call_schema

WEATHER = ToolSpec(
    "get_weather",
    "Current weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city"],
    },
)
ADD = ToolSpec(
    "add",
    "Add two integers",
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)
TOOLS = [WEATHER, ADD]


def calls(reply: ParsedReply) -> list[tuple[str, dict]]:
    return [(c.name, dict(c.arguments)) for c in reply.calls]


@pytest.mark.parametrize(
    ("text", "content", "expected"),
    [
        # Hermes / Qwen, with and without the closing tag, with text before it.
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
            "",
            [("get_weather", {"city": "Paris"})],
        ),
        (
            'Let me check.\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}',
            "Let me check.",
            [("add", {"a": 1, "b": 2})],
        ),
        (
            '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
            "",
            [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})],
        ),
        # Llama 3: python tag, "parameters" instead of "arguments", ";"-separated.
        (
            '<|python_tag|>{"name": "add", "parameters": {"a": 3, "b": 4}}; '
            '{"name": "add", "parameters": {"a": 5, "b": 6}}',
            "",
            [("add", {"a": 3, "b": 4}), ("add", {"a": 5, "b": 6})],
        ),
        ('{"name": "add", "parameters": {"a": 3, "b": 4}}', "", [("add", {"a": 3, "b": 4})]),
        # Mistral, old and new syntax.
        (
            '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Rome"}}]',
            "",
            [("get_weather", {"city": "Rome"})],
        ),
        (
            '[TOOL_CALLS]add[ARGS]{"a": 1, "b": 1}[TOOL_CALLS]add[ARGS]{"a": 2, "b": 2}',
            "",
            [("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2})],
        ),
        # Bare JSON, fenced, a list, OpenAI's nested shape, arguments as a JSON string.
        (
            '```json\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n```',
            "",
            [("get_weather", {"city": "Lima"})],
        ),
        (
            '[{"name": "add", "arguments": {"a": 1, "b": 2}}, '
            '{"name": "get_weather", "arguments": {"city": "Bern"}}]',
            "",
            [("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Bern"})],
        ),
        (
            '{"type": "function", "function": {"name": "add", "arguments": "{\\"a\\": 7, '
            '\\"b\\": 8}"}}',
            "",
            [("add", {"a": 7, "b": 8})],
        ),
    ],
)
def test_every_syntax_gives_the_same_calls(text: str, content: str, expected: list) -> None:
    reply = parse_tool_calls(text, TOOLS)
    assert calls(reply) == expected
    assert reply.content == content
    assert all(c.id.startswith("call_") and len(c.id) > 10 for c in reply.calls)
    assert len({c.id for c in reply.calls}) == len(reply.calls)


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Paris is sunny.",
        # An undeclared function is not a call.
        '{"name": "delete_everything", "arguments": {}}',
        '<tool_call>{"name": "rm", "arguments": {}}</tool_call>',
        # JSON followed by prose is an answer that shows JSON.
        '{"name": "add", "arguments": {"a": 1, "b": 2}} is how you would call it.',
        # Arguments that are not an object, or not JSON at all.
        '{"name": "add", "arguments": [1, 2]}',
        '{"name": "add", "arguments": "not json"}',
        "<tool_call>not json</tool_call>",
        '{"city": "Paris"}',
        "",
    ],
)
def test_what_is_not_a_call_stays_text(text: str) -> None:
    reply = parse_tool_calls(text, TOOLS)
    assert reply.calls == ()
    assert reply.content == text


def test_without_tools_nothing_is_parsed() -> None:
    text = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    assert parse_tool_calls(text, []) == ParsedReply(text)


def _stream(text: str, pieces: list[str], tools: list[ToolSpec] = TOOLS) -> tuple[str, ParsedReply]:
    stream = ToolCallStream(tools)
    shown = "".join(stream.feed(piece) for piece in pieces)
    rest = stream.finish()
    assert "".join(pieces) == text
    return shown, rest


def _split(text: str, seed: int) -> list[str]:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(text):
        n = rng.randint(1, 6)
        pieces.append(text[i : i + n])
        i += n
    return pieces


STREAMED = [
    "Plain prose with no call at all, and a < sign and a [bracket].",
    'Let me look.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
    '{"name": "add", "arguments": {"a": 2, "b": 40}}',
    '```json\n{"name": "add", "arguments": {"a": 2, "b": 40}}\n```',
    '[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 1}}]',
    '{"answer": 42}',  # held back as a possible call, then released as text
    'Sure: <tool_call>{"name": "nope", "arguments": {}}</tool_call>',
]


@pytest.mark.parametrize("text", STREAMED)
@pytest.mark.parametrize("seed", range(5))
def test_streaming_agrees_with_the_whole_reply(text: str, seed: int) -> None:
    whole = parse_tool_calls(text, TOOLS)
    shown, rest = _stream(text, _split(text, seed))
    assert calls(rest) == calls(whole)
    # What the user reads, streamed then at the end, is the whole reply's content.
    # (whitespace between the two may differ: compare words).
    assert (shown + " " + rest.content).split() == whole.content.split()
    if whole.calls:
        # No part of a call's JSON is ever shown as text.
        assert "arguments" not in shown


def test_streaming_shows_prose_before_the_call_as_it_comes() -> None:
    stream = ToolCallStream(TOOLS)
    assert stream.feed("Let me ") == "Let me "
    assert stream.feed("check. <tool") == "check. "  # "<tool" may begin a marker: held
    assert stream.feed('_call>{"name": "add", ') == ""
    assert stream.feed('"arguments": {"a": 1, "b": 2}}</tool_call>') == ""
    rest = stream.finish()
    assert calls(rest) == [("add", {"a": 1, "b": 2})]
    assert rest.content == ""


def test_a_held_partial_marker_is_released_when_it_is_not_one() -> None:
    stream = ToolCallStream(TOOLS)
    assert stream.feed("a <to") == "a "
    assert stream.feed("ast> b") == "<toast> b"
    assert stream.finish() == ParsedReply("")


def test_streaming_without_tools_holds_nothing_back() -> None:
    stream = ToolCallStream([])
    assert stream.feed('{"name": "add"') == '{"name": "add"'
    assert stream.feed(', "arguments": {}}') == ', "arguments": {}}'
    assert stream.finish() == ParsedReply("")


# -- the forced-call schema ---------------------------------------------------------------


def test_the_schema_admits_exactly_the_declared_calls() -> None:
    schema = tool_call_schema(TOOLS)
    good = [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}},
        {"name": "add", "arguments": {"a": 1, "b": 2}},
    ]
    bad = [
        {"name": "get_weather", "arguments": {}},  # a required argument missing
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "k"}},
        {"name": "add", "arguments": {"a": "1", "b": 2}},
        {"name": "other", "arguments": {}},
        {"name": "add"},
        {"name": "add", "arguments": {"a": 1, "b": 2}, "extra": True},
    ]
    for call in good:
        jsonschema.validate(call, schema)
    for call in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(call, schema)
    # A call the schema admits is one the parser finds.
    for call in good:
        assert calls(parse_tool_calls(json.dumps(call), TOOLS)) == [
            (call["name"], call["arguments"])
        ]


def test_one_tool_and_a_tool_without_parameters() -> None:
    schema = tool_call_schema([ToolSpec("now")])
    assert "anyOf" not in schema
    jsonschema.validate({"name": "now", "arguments": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "now", "arguments": []}, schema)


# -- templates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for m in messages %}{{ m.content }}{% endfor %}", False),
        ("{% if tools %}{{ tools | tojson }}{% endif %}{{ messages }}", True),
        ("{% for tool in tools %}{{ tool.function.name }}{% endfor %}", True),
        ("", False),
        (None, False),
    ],
)
def test_which_templates_take_tools(source: str | None, expected: bool) -> None:
    assert supports_tools(source) is expected
