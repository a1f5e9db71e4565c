"""The Ollama request schemas: defaults, option mapping, keep_alive, what they refuse."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from ollm.api.http.errors import validation_error_body
from ollm.api.ollama.schemas import (
    ChatRequest,
    CopyRequest,
    DeleteRequest,
    GenerateRequest,
    PullRequest,
    ShowRequest,
)
from ollm.sampling import JsonOutput, SamplingParams

USER = [{"role": "user", "content": "hi"}]
CONTEXT = 2048


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "m", "messages": USER, **fields})


def params(**options: Any) -> SamplingParams:
    return chat(options=options).options.sampling_params(context_length=CONTEXT)


def rejected(model: type, body: dict[str, Any]) -> str:
    """The message of the 400 the API would send for ``body``."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return validation_error_body(info.value.errors())["error"]["message"]


# -- options ------------------------------------------------------------------------------


def test_ollama_defaults_when_options_are_left_out() -> None:
    p = chat().options.sampling_params(context_length=CONTEXT)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.8, 40, 0.9, 0.0)
    assert (p.repeat_penalty, p.penalty_last_n) == (1.1, 64)
    assert (p.presence_penalty, p.frequency_penalty) == (0.0, 0.0)
    assert p.max_tokens is None
    assert p.seed is None
    assert p.stop == ()
    assert chat(options=None).options.sampling_params(context_length=CONTEXT) == p


def test_options_map_to_sampling_params() -> None:
    p = params(
        temperature=0,
        top_k=5,
        top_p=0.5,
        min_p=0.1,
        seed=42,
        num_predict=12,
        stop=["END", "###"],
        repeat_penalty=1.3,
        repeat_last_n=32,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.0, 5, 0.5, 0.1)
    assert (p.seed, p.max_tokens, p.stop) == (42, 12, ("END", "###"))
    assert (p.repeat_penalty, p.penalty_last_n) == (1.3, 32)
    assert (p.presence_penalty, p.frequency_penalty) == (0.5, -0.5)
    assert p.greedy


@pytest.mark.parametrize("num_predict", [-1, -2, 0])
def test_num_predict_unlimited_values(num_predict: int) -> None:
    assert params(num_predict=num_predict).max_tokens is None


def test_special_option_values() -> None:
    assert params(seed=-1).seed is None  # Ollama: negative seed = random
    assert params(repeat_last_n=-1).penalty_last_n == CONTEXT
    assert params(repeat_last_n=0).penalty_last_n == 0
    assert params(repeat_penalty=0).repeat_penalty == 1.0
    assert params(top_k=0).top_k == 0
    assert params(top_k=-1).top_k == 0
    assert params(stop="END").stop == ("END",)
    assert params(num_ctx=999999).max_tokens is None  # accepted; the server's context applies


def test_unknown_and_unsupported_options_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        p = params(temprature=0.1, mirostat=2, num_gpu=99, num_thread=4)
    assert p.temperature == 0.8
    assert "temprature" in caplog.text
    assert "mirostat" not in caplog.text  # known to Ollama: ignored silently


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"temperature": "hot"}, "options.temperature"),
        ({"num_predict": 1.5}, "options.num_predict"),
        ({"num_predict": -3}, "options.num_predict"),
        ({"top_p": 1.5}, "options.top_p"),
        ({"temperature": -1}, "options.temperature"),
        ({"stop": [1, 2]}, "options.stop"),
        ({"seed": "x"}, "options.seed"),
        ({"stop": ["s"] * 17}, "options.stop"),
    ],
)
def test_wrong_option_types_are_rejected(options: dict[str, Any], field: str) -> None:
    message = rejected(ChatRequest, {"model": "m", "messages": USER, "options": options})
    assert field in message


def test_options_must_be_an_object() -> None:
    assert "options" in rejected(ChatRequest, {"messages": USER, "options": [1]})


# -- requests -----------------------------------------------------------------------------


def test_streaming_is_the_default() -> None:
    assert chat().stream is True
    assert chat(stream=None).stream is True
    assert chat(stream=False).stream is False
    assert PullRequest(model="x").stream is True


def test_model_or_legacy_name() -> None:
    assert chat().model_name == "m"
    assert ChatRequest.model_validate({"name": "old", "messages": USER}).model_name == "old"
    assert ChatRequest.model_validate({"messages": USER}).model_name is None  # server default
    assert ShowRequest.model_validate({"name": "x"}).model_name == "x"
    for model in (ShowRequest, DeleteRequest, PullRequest):
        assert "model is required" in rejected(model, {})
    assert "destination" in rejected(CopyRequest, {"source": "a"})


def test_what_the_official_client_sends_is_accepted() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}],
        "tools": [],
        "stream": False,
        "options": {"temperature": 0, "seed": 1},
        "keep_alive": "5m",
    }
    request = ChatRequest.model_validate(body)
    assert [m.content for m in request.chat_messages()] == ["hi", ""]
    assert request.keep_alive == 300
    generate = GenerateRequest.model_validate(
        {"model": "m", "prompt": "x", "raw": True, "context": [1, 2], "format": "", "think": False}
    )
    assert generate.raw and generate.prompt == "x"


def test_unknown_top_level_fields_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert chat(streem=False).stream is True
    assert "streem" in caplog.text


@pytest.mark.parametrize(
    ("model", "body", "needle"),
    [
        (ChatRequest, {"messages": USER, "format": "yaml"}, "format"),
        (ChatRequest, {"messages": USER, "format": ["json"]}, "format"),
        (ChatRequest, {"messages": USER, "tools": [{"type": "function"}]}, "tools"),
        (ChatRequest, {"messages": USER, "think": "extreme"}, "think"),
        (ChatRequest, {"messages": USER, "logprobs": True}, "logprobs"),
        (ChatRequest, {"messages": [{"role": "user", "images": ["aGk="]}]}, "images"),
        (ChatRequest, {"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        (ChatRequest, {"messages": USER, "keep_alive": "soon"}, "keep_alive"),
        (ChatRequest, {"messages": USER, "keep_alive": [1]}, "keep_alive"),
        (GenerateRequest, {"prompt": "x", "template": "{{ .Prompt }}"}, "template"),
        (GenerateRequest, {"prompt": "x", "images": ["aGk="]}, "images"),
        (GenerateRequest, {"prompt": 5}, "prompt"),
    ],
)
def test_unsupported_or_invalid_fields_are_400(
    model: type, body: dict[str, Any], needle: str
) -> None:
    assert needle in rejected(model, body)


def test_format_json_or_a_schema_constrains_the_output() -> None:
    plain = ChatRequest.model_validate({"model": "m", "messages": USER, "format": "json"})
    assert plain.sampling_params(context_length=64).json_output == JsonOutput(schema=None)
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    shaped = ChatRequest.model_validate({"model": "m", "messages": USER, "format": schema})
    assert shaped.sampling_params(context_length=64).json_output == JsonOutput(schema=schema)
    free = ChatRequest.model_validate({"model": "m", "messages": USER, "format": ""})
    assert free.sampling_params(context_length=64).json_output is None


# -- keep_alive ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("0", 0.0),
        ("0s", 0.0),
        (0, 0.0),
        (12.5, 12.5),
        ("300", 300.0),
        (-1, -1.0),
        ("-1m", -60.0),
    ],
)
def test_keep_alive_is_seconds(value: float | str | None, seconds: float | None) -> None:
    assert chat(keep_alive=value).keep_alive == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "5 minutes", "1h 30m", "5x", "", True, "nan", [5]])
def test_bad_keep_alive_is_rejected(value: Any) -> None:
    assert "keep_alive" in rejected(ChatRequest, {"messages": USER, "keep_alive": value})


@pytest.mark.parametrize("value", [1e15, "1e15", "inf", "100000000h"])
def test_a_keep_alive_of_centuries_means_forever(value: object) -> None:
    """No date can say when such a model unloads (the fuzz found /api/ps failing on one)."""
    request = ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "keep_alive": value}
    )
    assert request.keep_alive == -1
