"""Request and response bodies of the OpenAI dialect.

Requests forbid unknown fields (a misspelt option is a 400 naming it, never silently
ignored) but accept every field the official ``openai`` client may send; fields we
cannot honour are accepted only at their neutral value (``logit_bias`` empty,
``best_of=1``...) and are a 400 "not supported" otherwise. OpenAI's defaults apply
when a field is left out: temperature 1.0, top_p 1.0, and 16 tokens for legacy
completions.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ollm.chat.messages import ChatMessage, ToolCall, ToolChoice, ToolSpec
from ollm.engine.outputs import TokenLogprob
from ollm.sampling import (
    MAX_CHOICES,
    MAX_COUNT,
    MAX_SEED,
    MAX_TOP_LOGPROBS,
    MIN_SEED,
    JsonOutput,
    SamplingParams,
)

MAX_STOP_STRINGS = 16
OPENAI_TEMPERATURE = 1.0
OPENAI_TOP_P = 1.0
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
MAX_COMPLETION_LOGPROBS = 5  # legacy completions' ``logprobs`` limit, as OpenAI's
MAX_PROMPTS = 16  # prompts in one legacy completion request
# JSON has no -inf: a token the model rules out gets this (vLLM's choice too).
MIN_LOGPROB = -9999.0

FinishReason = Literal["stop", "length", "tool_calls"]


def _not_supported(what: str) -> ValueError:
    return ValueError(f"{what} is not supported by this server")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    """``stream_options``: only ``include_usage`` changes anything here."""

    include_usage: bool | None = False
    include_obfuscation: bool | None = None  # accepted; there is nothing to obfuscate


class _GenerationRequest(_Strict):
    """Fields chat and legacy completions share, and their mapping to SamplingParams."""

    model: str | None = Field(None, description="Model id; the server's default if omitted.")
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_COUNT, description="Most tokens to generate.")
    n: int | None = Field(
        None, ge=1, le=MAX_CHOICES, description="Choices to generate; the prompt is computed once."
    )
    seed: int | None = Field(
        None, ge=MIN_SEED, le=MAX_SEED, description="Same seed and parameters, same output."
    )
    stop: str | list[str] | None = Field(None, description=f"Up to {MAX_STOP_STRINGS} strings.")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    user: str | None = None
    # Extras vLLM and llama.cpp accept.
    top_k: int | None = Field(None, ge=-1, le=MAX_COUNT, description="0 or -1 disables top-k.")
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = False

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value:
            raise _not_supported("logit_bias")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        strings = [value] if isinstance(value, str) else value or []
        if len(strings) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed")
        if any(not s for s in strings):
            raise ValueError("stop strings must not be empty")
        return value

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(
        cls, value: StreamOptions | None, info: ValidationInfo
    ) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    @model_validator(mode="after")
    def _min_within_max(self) -> _GenerationRequest:
        limit = self.effective_max_tokens
        if self.min_tokens and limit is not None and self.min_tokens > limit:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({limit})")
        return self

    @property
    def effective_max_tokens(self) -> int | None:
        """The generation limit asked for (``None``: until the context is full)."""
        return self.max_tokens

    @property
    def num_choices(self) -> int:
        return self.n or 1

    def logprobs_wanted(self) -> int | None:
        """Alternatives per token to report (0: only the sampled token's logprob), or None
        for no logprobs at all."""
        return None

    @property
    def include_usage(self) -> bool:
        """Whether a streamed response ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def sampling_params(self) -> SamplingParams:
        """The engine's view of this request, with OpenAI's defaults filled in."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return SamplingParams(
            temperature=OPENAI_TEMPERATURE if self.temperature is None else self.temperature,
            top_p=OPENAI_TOP_P if self.top_p is None else self.top_p,
            top_k=max(0, self.top_k or 0),
            min_p=self.min_p or 0.0,
            repeat_penalty=1.0 if self.repetition_penalty is None else self.repetition_penalty,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
            seed=self.seed,
            max_tokens=self.effective_max_tokens,
            min_tokens=self.min_tokens or 0,
            stop=tuple(stop),
            ignore_eos=bool(self.ignore_eos),
            logprobs=self.logprobs_wanted(),
        )


# -- chat completions -------------------------------------------------------------------


class ChatMessageIn(_Strict):
    """One message. Content is a string or a list of ``{"type": "text"}`` parts."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    # Echoed back by clients that append a previous response message as-is.
    refusal: str | None = None
    annotations: list[Any] | None = None
    tool_calls: list[ToolCallIn] | None = None
    function_call: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for i, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                raise ValueError(
                    f"content part {i} has type {kind!r}; only 'text' parts are supported"
                )
            if not isinstance(part.get("text"), str):
                raise ValueError(f"content part {i} needs a string 'text'")
            texts.append(part["text"])
        return "\n".join(texts)

    @field_validator("function_call", "audio")
    @classmethod
    def _no_tool_calls(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            raise _not_supported(f"{info.field_name} in messages")
        return value

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessageIn:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs the 'tool_call_id' it answers")
        return self

    def to_chat_message(self, names: dict[str, str] | None = None) -> ChatMessage:
        """The dialect-neutral message (``developer`` is OpenAI's newer name for system).

        ``names`` maps earlier call ids to function names: a tool result names its
        function, as templates such as Llama 3's expect, though OpenAI only sends the id.
        """
        role = "system" if self.role == "developer" else self.role
        calls = tuple(call.to_tool_call() for call in self.tool_calls or ())
        name = self.name
        if role == "tool" and name is None and names:
            name = names.get(self.tool_call_id or "")
        return ChatMessage(
            role=role,
            content=self.content or "",
            tool_calls=calls,
            tool_call_id=self.tool_call_id if role == "tool" else None,
            name=name if role == "tool" else None,
        )


class FunctionCallIn(_Strict):
    """The function half of a tool call a client sends back in the history."""

    name: str = Field(..., min_length=1, max_length=256)
    arguments: str = "{}"

    @field_validator("arguments")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value or "{}")
        except ValueError as exc:
            raise ValueError("tool call arguments are not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise ValueError("tool call arguments must be a JSON object")
        return value


class ToolCallIn(_Strict):
    """A tool call in an assistant message of the history (arguments: a JSON string)."""

    id: str = Field(..., min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCallIn

    def to_tool_call(self) -> ToolCall:
        return ToolCall(self.id, self.function.name, json.loads(self.function.arguments or "{}"))


class FunctionSpec(_Strict):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolIn(_Strict):
    """``{"type": "function", "function": {...}}``: the only kind of tool there is here."""

    type: Literal["function"]
    function: FunctionSpec

    def to_spec(self) -> ToolSpec:
        f = self.function
        return ToolSpec(f.name, f.description or "", f.parameters or {})


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: dict[str, str]

    @field_validator("function")
    @classmethod
    def _has_name(cls, value: dict[str, str]) -> dict[str, str]:
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise ValueError("tool_choice.function needs a name")
        return value


class ResponseFormat(_Strict):
    """``text`` (the default), ``json_object``, or ``json_schema`` with a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_when_asked(self) -> ResponseFormat:
        if self.type == "json_schema" and not isinstance(
            (self.json_schema or {}).get("schema"), dict
        ):
            raise ValueError("response_format json_schema needs json_schema.schema (an object)")
        return self

    def json_output(self) -> JsonOutput | None:
        if self.type == "text":
            return None
        schema = (self.json_schema or {}).get("schema") if self.type == "json_schema" else None
        return JsonOutput(schema=schema)


class ChatCompletionRequest(_GenerationRequest):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessageIn] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(
        None, ge=1, le=MAX_COUNT, description="Alias of max_tokens."
    )
    logprobs: bool | None = Field(None, description="Return each token's log-probability.")
    top_logprobs: int | None = Field(
        None, ge=0, le=MAX_TOP_LOGPROBS, description="Most likely alternatives per token."
    )
    response_format: ResponseFormat | None = None
    tools: list[ToolIn] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    # Accepted and ignored: bookkeeping hints with no effect on the output.
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # Features of other models; accepted only when empty.
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    web_search_options: dict[str, Any] | None = None

    def sampling_params(self) -> SamplingParams:
        """As for every request, plus the JSON constraint ``response_format`` asks for."""
        params = super().sampling_params()
        if self.response_format is None:
            return params
        return dataclasses.replace(params, json_output=self.response_format.json_output())

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs set to true")
        return self

    def logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    @field_validator("functions", "store")
    @classmethod
    def _empty_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value:
            hint = " (use tools)" if info.field_name == "functions" else ""
            raise _not_supported(f"{info.field_name}{hint}")
        return value

    @field_validator("function_call")
    @classmethod
    def _no_function_call(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, "none", "auto"):
            raise _not_supported(f"{info.field_name} {value!r} (use tool_choice)")
        return value

    def tool_specs(self) -> list[ToolSpec]:
        """The functions the model may call."""
        return [tool.to_spec() for tool in self.tools or ()]

    def tool_choice_name(self) -> ToolChoice:
        """``auto`` (the default when tools are given), ``none``, ``required`` or a name."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function["name"]
        return self.tool_choice or "auto"

    @field_validator("modalities")
    @classmethod
    def _text_modality(cls, value: list[str] | None) -> list[str] | None:
        if value and value != ["text"]:
            raise _not_supported("output modalities other than ['text']")
        return value

    @field_validator("prediction", "audio", "reasoning_effort", "verbosity", "web_search_options")
    @classmethod
    def _null_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise _not_supported(info.field_name)
        return value

    @property
    def effective_max_tokens(self) -> int | None:
        """``max_completion_tokens`` is the newer name and wins when both are given."""
        return self.max_completion_tokens or self.max_tokens

    def chat_messages(self) -> list[ChatMessage]:
        """The conversation in the dialect-neutral form the service takes."""
        names: dict[str, str] = {}
        out = []
        for message in self.messages:
            converted = message.to_chat_message(names)
            names.update((call.id, call.name) for call in converted.tool_calls)
            out.append(converted)
        return out


# -- legacy completions -------------------------------------------------------------------


Prompt = str | list[int]


class CompletionRequest(_GenerationRequest):
    """``POST /v1/completions``: a text prompt, a list of them, or token ids (one list or
    a list of lists); each prompt gets ``n`` choices, indexed prompt by prompt."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(
        COMPLETIONS_DEFAULT_MAX_TOKENS, ge=1, description="Most tokens to generate (16)."
    )
    best_of: int | None = None
    echo: bool | None = Field(False, description="Put the prompt before each completion.")
    logprobs: int | None = Field(
        None,
        ge=0,
        le=MAX_COMPLETION_LOGPROBS,
        description="Log-probabilities of each token and of this many alternatives.",
    )
    suffix: str | None = Field(
        None, description="Text after the completion (fill-in-the-middle models only)."
    )

    @field_validator("prompt")
    @classmethod
    def _prompts_not_empty(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value or any(isinstance(item, list) and not item for item in value):
                raise ValueError("the prompt must not be empty")
            count = len(value) if isinstance(value[0], str | list) else 1
            if count > MAX_PROMPTS:
                raise ValueError(f"at most {MAX_PROMPTS} prompts per request")
        return value

    @field_validator("best_of")
    @classmethod
    def _one_candidate(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise _not_supported("best_of other than 1")
        return value

    @model_validator(mode="after")
    def _echo_without_prompt_logprobs(self) -> CompletionRequest:
        if self.echo and self.logprobs is not None:
            raise _not_supported("echo with logprobs (the prompt's logprobs)")
        return self

    def prompts(self) -> list[Prompt]:
        """Each prompt to complete: text, or token ids."""
        value = self.prompt
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [cast(list[int], value)]
        return cast(list[Prompt], list(value))

    def logprobs_wanted(self) -> int | None:
        return self.logprobs


# -- responses ----------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    """How many prompt tokens came from the prefix cache instead of being computed."""

    cached_tokens: int = 0


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=cached_tokens),
        )


class FunctionCallOut(BaseModel):
    name: str
    arguments: str  # a JSON string, as OpenAI sends it


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut

    @classmethod
    def of(cls, call: ToolCall) -> ToolCallOut:
        arguments = json.dumps(dict(call.arguments), ensure_ascii=False)
        return cls(id=call.id, function=FunctionCallOut(name=call.name, arguments=arguments))


class AssistantMessage(BaseModel):
    """The reply. ``reasoning_content``: a reasoning model's thinking, kept out of
    ``content`` (vLLM's and DeepSeek's field); left out when the model did not think."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallOut] | None = None

    @model_serializer(mode="wrap")
    def _calls_only_when_made(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if not self.tool_calls:
            data.pop("tool_calls", None)
        if self.reasoning_content is None:
            data.pop("reasoning_content", None)
        return data


class TopLogprob(BaseModel):
    """A likely token at one position: its text, log-probability and UTF-8 bytes."""

    token: str
    logprob: float
    bytes: list[int] | None

    @classmethod
    def of(cls, piece: bytes, logprob: float) -> TopLogprob:
        text = piece.decode("utf-8", errors="replace")
        return cls(token=text, logprob=max(logprob, MIN_LOGPROB), bytes=list(piece))


class ChatTokenLogprob(TopLogprob):
    """A generated token, as the model scored it, and the likeliest alternatives there."""

    top_logprobs: list[TopLogprob]

    @classmethod
    def of_token(cls, entry: TokenLogprob) -> ChatTokenLogprob:
        head = TopLogprob.of(entry.token, entry.logprob)
        top = [TopLogprob.of(piece, logprob) for piece, logprob in entry.top]
        return cls(**head.model_dump(), top_logprobs=top)


class ChatLogprobs(BaseModel):
    """``choices[].logprobs`` of a chat completion (or of one streamed chunk)."""

    content: list[ChatTokenLogprob] | None
    refusal: list[ChatTokenLogprob] | None = None

    @classmethod
    def of(cls, entries: tuple[TokenLogprob, ...]) -> ChatLogprobs:
        return cls(content=[ChatTokenLogprob.of_token(entry) for entry in entries])


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    """A non-streamed chat completion."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoice]
    usage: Usage


class FunctionDelta(BaseModel):
    name: str | None = None
    arguments: str = ""

    @model_serializer
    def _without_nulls(self) -> dict[str, str]:
        return {
            k: v for k, v in (("name", self.name), ("arguments", self.arguments)) if v is not None
        }


class ToolCallDelta(BaseModel):
    """A piece of a streamed call: the first names it (id, name), later ones add argument
    text; the client joins pieces with the same ``index``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionDelta

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatDelta(BaseModel):
    """What a chunk adds to the message; unset fields are left out, as OpenAI does."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    """One streamed chat event. The usage chunk has no choices."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    """Legacy ``choices[].logprobs``: parallel lists, one entry per generated token;
    ``text_offset`` is where each token starts in the choice's text (in characters)."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]

    @classmethod
    def of(cls, entries: tuple[TokenLogprob, ...], *, offset: int, top: int) -> CompletionLogprobs:
        """``entries`` as generated, the first starting at character ``offset``."""
        tokens, offsets = [], []
        for entry in entries:
            text = entry.token.decode("utf-8", errors="replace")
            tokens.append(text)
            offsets.append(offset)
            offset += len(text)
        best = None
        if top:
            best = [
                {
                    piece.decode("utf-8", errors="replace"): max(lp, MIN_LOGPROB)
                    for piece, lp in entry.top
                }
                for entry in entries
            ]
        return cls(
            tokens=tokens,
            token_logprobs=[max(entry.logprob, MIN_LOGPROB) for entry in entries],
            top_logprobs=best,
            text_offset=offsets,
        )


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class Completion(BaseModel):
    """A legacy completion; streamed chunks have the same shape (usage only at the end)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """One model in ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ollm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
