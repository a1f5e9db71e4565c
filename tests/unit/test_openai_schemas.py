"""The OpenAI request schemas: what they accept, what they refuse, what they map to."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ollm.api.http.errors import validation_error_body
from ollm.api.openai.schemas import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    CompletionRequest,
)
from ollm.chat.messages import ChatMessage

USER = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})


def rejected(model: type, body: dict[str, Any]) -> dict[str, Any]:
    """The 400 envelope the API would send for ``body``."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return validation_error_body(info.value.errors())["error"]


def chat_rejected(**fields: Any) -> dict[str, Any]:
    return rejected(ChatCompletionRequest, {"model": "m", "messages": USER, **fields})


def test_openai_defaults_when_fields_are_left_out() -> None:
    params = chat().sampling_params()
    assert params.temperature == 1.0
    assert params.top_p == 1.0
    assert params.max_tokens is None
    assert params.stop == ()
    assert params.seed is None


def test_sampling_fields_map_to_sampling_params() -> None:
    params = chat(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        repetition_penalty=1.1,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        seed=7,
        max_tokens=20,
        min_tokens=3,
        stop="END",
        ignore_eos=True,
    ).sampling_params()
    assert (params.temperature, params.top_p, params.top_k, params.min_p) == (0.2, 0.9, 40, 0.05)
    assert params.repeat_penalty == 1.1
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert (params.seed, params.max_tokens, params.min_tokens) == (7, 20, 3)
    assert params.stop == ("END",)
    assert params.ignore_eos


def test_top_k_minus_one_means_disabled() -> None:
    assert chat(top_k=-1).sampling_params().top_k == 0


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert chat(max_tokens=50, max_completion_tokens=5).sampling_params().max_tokens == 5
    assert chat(max_tokens=50).sampling_params().max_tokens == 50


def test_stop_list_is_kept_in_order() -> None:
    assert chat(stop=["a", "b"]).sampling_params().stop == ("a", "b")


def test_fields_the_openai_client_may_send_are_accepted_at_neutral_values() -> None:
    request = chat(
        n=1,
        logprobs=False,
        top_logprobs=None,
        logit_bias={},
        response_format={"type": "text"},
        tools=[],
        tool_choice="none",
        parallel_tool_calls=False,
        user="u-1",
        store=False,
        metadata={"k": "v"},
        service_tier="auto",
        modalities=["text"],
        prediction=None,
        audio=None,
        reasoning_effort=None,
        web_search_options=None,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert request.include_usage


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("n", 9, "less than or equal to 8"),
        ("n", 0, "greater than or equal to 1"),
        ("top_logprobs", 21, "less than or equal to 20"),
        ("logit_bias", {"50256": -100}, "logit_bias is not supported"),
        ("functions", [{"name": "f"}], "functions (use tools) is not supported"),
        ("tool_choice", "sometimes", "tool_choice"),
        ("response_format", {"type": "json_schema"}, "json_schema.schema"),
        ("modalities", ["text", "audio"], "modalities"),
        ("audio", {"voice": "alloy"}, "audio is not supported"),
        ("reasoning_effort", "low", "reasoning_effort is not supported"),
        ("store", True, "store is not supported"),
    ],
)
def test_unsupported_values_are_refused_naming_the_field(field, value, fragment) -> None:
    error = chat_rejected(**{field: value})
    assert error["param"].startswith(field)
    assert fragment in error["message"]
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -1),
        ("temperature", 2.5),
        ("top_p", 0),
        ("top_p", 1.5),
        ("top_k", -2),
        ("min_p", 1.5),
        ("max_tokens", 0),
        ("max_completion_tokens", 0),
        ("presence_penalty", 3),
        ("frequency_penalty", -3),
        ("repetition_penalty", 0),
        ("min_tokens", -1),
    ],
)
def test_out_of_range_values_are_refused(field, value) -> None:
    error = chat_rejected(**{field: value})
    assert error["param"] == field
    assert field in error["message"]


def test_unknown_top_level_field_is_named() -> None:
    error = chat_rejected(temprature=0.5)
    assert error["message"] == "Unrecognized request argument supplied: temprature"
    assert error["param"] == "temprature"


def test_too_many_or_empty_stop_strings() -> None:
    assert "at most 16" in chat_rejected(stop=[str(i) for i in range(17)])["message"]
    assert "must not be empty" in chat_rejected(stop=["ok", ""])["message"]
    assert chat(stop=[str(i) for i in range(16)]).sampling_params().stop[-1] == "15"


def test_stream_options_need_stream() -> None:
    error = chat_rejected(stream_options={"include_usage": True})
    assert error["param"] == "stream_options"
    assert not chat(stream=True).include_usage


def test_min_tokens_cannot_exceed_max_tokens() -> None:
    assert (
        "min_tokens (9) must not exceed max_tokens (5)"
        in chat_rejected(min_tokens=9, max_tokens=5)["message"]
    )


def test_empty_messages_and_unknown_role() -> None:
    assert rejected(ChatCompletionRequest, {"model": "m", "messages": []})["param"] == "messages"
    error = rejected(ChatCompletionRequest, {"messages": [{"role": "robot", "content": "x"}]})
    assert error["param"] == "messages[0].role"
    assert "'user'" in error["message"]


def test_missing_messages_is_named() -> None:
    error = rejected(ChatCompletionRequest, {"model": "m"})
    assert error["message"] == "Missing required parameter: 'messages'."


def test_text_content_parts_are_joined_and_images_refused() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    request = chat(messages=[{"role": "user", "content": parts}])
    assert request.chat_messages() == [ChatMessage("user", "one\ntwo")]
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    error = chat_rejected(messages=[{"role": "user", "content": [image]}])
    assert error["param"] == "messages[0].content"
    assert "only 'text' parts" in error["message"]


def test_developer_role_is_a_system_message_and_user_needs_content() -> None:
    request = chat(messages=[{"role": "developer", "content": "be brief"}, *USER])
    assert request.chat_messages()[0] == ChatMessage("system", "be brief")
    assert "needs 'content'" in chat_rejected(messages=[{"role": "user"}])["message"]


def test_echoed_assistant_message_with_null_fields_is_accepted() -> None:
    previous = {"role": "assistant", "content": "x", "refusal": None, "tool_calls": None}
    request = chat(messages=[*USER, previous, *USER])
    assert request.chat_messages()[1] == ChatMessage("assistant", "x")


def test_completion_defaults_to_sixteen_tokens() -> None:
    request = CompletionRequest.model_validate({"model": "m", "prompt": "once"})
    assert request.sampling_params().max_tokens == 16
    assert request.sampling_params().temperature == 1.0


def test_completion_prompt_shapes() -> None:
    def prompts(value):
        return CompletionRequest.model_validate({"prompt": value}).prompts()

    assert prompts("one") == ["one"]
    assert prompts(["only"]) == ["only"]
    assert prompts(["a", "b"]) == ["a", "b"]
    assert prompts([1, 2, 3]) == [[1, 2, 3]]
    assert prompts([[1, 2], [3]]) == [[1, 2], [3]]
    for empty in ([], [[]], [[1], []]):
        error = rejected(CompletionRequest, {"prompt": empty})
        assert error["param"] == "prompt" and "empty" in error["message"]
    many = rejected(CompletionRequest, {"prompt": ["x"] * 17})
    assert "at most 16 prompts" in many["message"]
    assert rejected(CompletionRequest, {"prompt": [1, "a"]})["param"].startswith("prompt")


def test_chat_logprobs_options() -> None:
    def wanted(**fields):
        body = {"messages": [{"role": "user", "content": "hi"}], **fields}
        return ChatCompletionRequest.model_validate(body).sampling_params().logprobs

    assert wanted() is None
    assert wanted(logprobs=False) is None
    assert wanted(logprobs=True) == 0
    assert wanted(logprobs=True, top_logprobs=5) == 5
    body = {"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}
    assert "needs logprobs" in rejected(ChatCompletionRequest, body)["message"]


def test_completion_logprobs_echo_and_suffix() -> None:
    request = CompletionRequest.model_validate({"prompt": "x", "logprobs": 3, "suffix": "y"})
    assert request.sampling_params().logprobs == 3 and request.suffix == "y"
    assert CompletionRequest.model_validate({"prompt": "x"}).sampling_params().logprobs is None
    assert rejected(CompletionRequest, {"prompt": "x", "logprobs": 6})["param"] == "logprobs"
    error = rejected(CompletionRequest, {"prompt": "x", "echo": True, "logprobs": 1})
    assert "echo with logprobs" in error["message"] and "not supported" in error["message"]


def test_completion_best_of_is_refused() -> None:
    error = rejected(CompletionRequest, {"prompt": "x", "best_of": 2})
    assert error["param"] == "best_of"
    assert "not supported" in error["message"]


def test_chat_delta_leaves_out_unset_fields() -> None:
    chunk = ChatCompletionChunk(
        id="chatcmpl-1",
        created=0,
        model="m",
        choices=[ChatChunkChoice(delta=ChatDelta(content="hi"))],
    )
    data = chunk.model_dump(mode="json")
    assert data["choices"][0]["delta"] == {"content": "hi"}
    assert data["choices"][0]["finish_reason"] is None
    assert data["object"] == "chat.completion.chunk"


def test_response_format_json_maps_to_a_json_constraint() -> None:
    from ollm.api.openai.schemas import ChatCompletionRequest
    from ollm.sampling import JsonOutput

    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = ChatCompletionRequest.model_validate(
        {**base, "response_format": {"type": "json_object"}}
    )
    assert plain.sampling_params().json_output == JsonOutput(schema=None)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    shaped = ChatCompletionRequest.model_validate(
        {
            **base,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "p", "schema": schema},
            },
        }
    )
    assert shaped.sampling_params().json_output == JsonOutput(schema=schema)
    text = ChatCompletionRequest.model_validate({**base, "response_format": {"type": "text"}})
    assert text.sampling_params().json_output is None
