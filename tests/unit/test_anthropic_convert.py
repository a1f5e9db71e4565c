"""The Anthropic dialect's pure pieces: request -> neutral messages, tools and sampling; the
stop string the engine reports; the error envelope per status."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ollm.api.anthropic import convert
from ollm.api.anthropic import schemas as s
from ollm.api.http.errors import anthropic_error_body, is_anthropic_path
from ollm.chat.messages import ChatMessage, ToolCall, ToolSpec
from ollm.engine.detokenizer import Detokenizer
from ollm.engine.outputs import RequestOutput


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def request(**fields: Any) -> s.MessagesRequest:
    return s.MessagesRequest.model_validate({"max_tokens": 16, **fields})


def test_strings_and_blocks_become_messages() -> None:
    body = request(
        system="Be kind.",
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            {"role": "user", "content": [text("a"), text("b")]},
        ],
    )
    assert convert.chat_messages(body) == [
        ChatMessage("system", "Be kind."),
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "hello"),
        ChatMessage("user", "a\nb"),
    ]


def test_system_blocks_join_and_an_empty_system_is_left_out() -> None:
    blocks = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    hi = [{"role": "user", "content": "hi"}]
    assert convert.chat_messages(request(system=blocks, messages=hi))[0] == ChatMessage(
        "system", "one\ntwo"
    )
    assert convert.chat_messages(request(system="", messages=hi)) == [ChatMessage("user", "hi")]


def test_tool_use_and_tool_result_map_to_calls_and_tool_messages() -> None:
    body = request(
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me see."},
                    {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"c": "P"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_b", "is_error": True,
                     "content": [text("clock"), text("down")]},
                    {"type": "text", "text": "thanks"},
                ],
            },
        ]
    )  # fmt: skip
    assert convert.chat_messages(body) == [
        ChatMessage("user", "weather?"),
        ChatMessage(
            "assistant",
            "Let me see.",
            tool_calls=(ToolCall("toolu_a", "weather", {"c": "P"}), ToolCall("toolu_b", "time")),
        ),
        ChatMessage("tool", "sunny", tool_call_id="toolu_a", name="weather"),
        ChatMessage("tool", "Error: clock\ndown", tool_call_id="toolu_b", name="time"),
        ChatMessage("user", "thanks"),
    ]


def test_tools_and_tool_choice() -> None:
    schema = {"type": "object", "properties": {"c": {"type": "string"}}}
    tools = [{"name": "weather", "description": "Weather.", "input_schema": schema}]
    hi = [{"role": "user", "content": "hi"}]
    assert convert.tool_specs(request(messages=hi, tools=tools)) == [
        ToolSpec("weather", "Weather.", schema)
    ]
    assert convert.tool_specs(request(messages=hi)) == []
    choices = {
        None: "auto",
        "auto": "auto",
        "any": "required",
        "none": "none",
    }
    for kind, expected in choices.items():
        choice = None if kind is None else {"type": kind}
        assert (
            convert.tool_choice(request(messages=hi, tools=tools, tool_choice=choice)) == expected
        )
    named = request(messages=hi, tools=tools, tool_choice={"type": "tool", "name": "weather"})
    assert convert.tool_choice(named) == "weather"


def test_sampling_defaults_are_anthropics() -> None:
    hi = [{"role": "user", "content": "hi"}]
    params = convert.sampling_params(request(messages=hi))
    assert (params.temperature, params.top_p, params.top_k) == (1.0, 1.0, 0)
    assert params.max_tokens == 16 and params.stop == ()
    params = convert.sampling_params(
        request(messages=hi, temperature=0, top_k=3, stop_sequences=["\n\n", "END"])
    )
    assert (params.temperature, params.top_k, params.stop) == (0.0, 3, ("\n\n", "END"))


def test_tool_choice_name_rules() -> None:
    with pytest.raises(ValidationError, match="needs the tool's 'name'"):
        s.ToolChoiceIn(type="tool")
    with pytest.raises(ValidationError, match="takes no 'name'"):
        s.ToolChoiceIn(type="auto", name="x")


# -- which stop string ended the text --------------------------------------------------------


def test_detokenizer_names_the_earliest_stop() -> None:
    detok = Detokenizer(stop=["END", "e, "])
    out = "".join(detok.push(piece) for piece in (b"Th", b"e, E", b"ND"))
    assert out == "Th" and detok.stopped
    assert detok.matched_stop == "e, "  # it starts before "END" does
    assert Detokenizer(stop=["x"]).matched_stop is None


def test_detokenizer_stop_split_across_tokens() -> None:
    detok = Detokenizer(stop=["</answer>"])
    out = "".join(detok.push(piece) for piece in (b"42</ans", b"wer> more"))
    assert out == "42" and detok.matched_stop == "</answer>"


def test_merged_outputs_keep_the_stop_sequence() -> None:
    first = RequestOutput("r", text="a")
    first.merge(RequestOutput("r", text="b", finish_reason="stop", stop_sequence="##"))
    assert (first.text, first.stop_sequence) == ("ab", "##")


# -- errors -----------------------------------------------------------------------------------


def test_error_types_by_status() -> None:
    expected = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        405: "invalid_request_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        502: "api_error",
        503: "overloaded_error",
    }
    for status, error_type in expected.items():
        assert anthropic_error_body("m", status) == {
            "type": "error",
            "error": {"type": error_type, "message": "m"},
        }


def test_anthropic_paths() -> None:
    assert is_anthropic_path("/v1/messages")
    assert is_anthropic_path("/v1/messages/count_tokens")
    assert not is_anthropic_path("/v1/messagesx")
    assert not is_anthropic_path("/v1/chat/completions")
    assert not is_anthropic_path("/api/v1/chats/1/messages")
