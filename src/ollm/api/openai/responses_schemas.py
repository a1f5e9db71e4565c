"""Request and response bodies of the OpenAI Responses API (``/v1/responses``).

The conventions of :mod:`ollm.api.openai.schemas` hold here too: unknown fields are a
400 naming them; every field the official ``openai`` client may send is accepted, and
those this server cannot honour only at their neutral value (anything else is a 400
"not supported"). OpenAI's defaults apply: temperature 1.0, top_p 1.0, ``store`` true.

Input items are the messages, ``function_call`` and ``function_call_output`` items a
client sends (an output message echoed back as input included); they become the
dialect-neutral :class:`~ollm.chat.messages.ChatMessage` list the service renders.
Stored items are kept in the normalised JSON form :meth:`InputItem.stored` gives them,
which parses back into the same models.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ollm.api.openai.schemas import OPENAI_TEMPERATURE, OPENAI_TOP_P
from ollm.chat.messages import ChatMessage, ToolCall, ToolChoice, ToolSpec
from ollm.sampling import MAX_COUNT, JsonOutput, SamplingParams

MAX_TOOLS = 128
MAX_METADATA_KEYS = 16
ItemStatus = Literal["in_progress", "completed", "incomplete"]


def _not_supported(what: str) -> ValueError:
    return ValueError(f"{what} is not supported by this server")


def new_item_id(prefix: str) -> str:
    """An item id in OpenAI's style (``msg_…``, ``fc_…``)."""
    return f"{prefix}_{uuid.uuid4().hex}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- input: content parts ---------------------------------------------------------------


class InputTextPart(_Strict):
    type: Literal["input_text"]
    text: str
    prompt_cache_breakpoint: dict[str, Any] | None = None  # a caching hint: no effect here


class OutputTextPart(_Strict):
    """Text the model wrote, as it comes back when a client echoes an output message."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: str


_PART_TYPES = ("input_text", "output_text", "refusal")


def _part_tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _PART_TYPES else None


ContentPart = Annotated[
    Annotated[InputTextPart, Tag("input_text")]
    | Annotated[OutputTextPart, Tag("output_text")]
    | Annotated[RefusalPart, Tag("refusal")],
    Discriminator(
        _part_tag,
        custom_error_type="content_part_not_supported",
        custom_error_message=(
            "this content part type is not supported by this server (only 'input_text' and "
            "'output_text' parts are: no images, files or audio)"
        ),
    ),
]


def _part_text(part: InputTextPart | OutputTextPart | RefusalPart) -> str:
    return part.refusal if isinstance(part, RefusalPart) else part.text


# -- input: items ---------------------------------------------------------------------------


class MessageItem(_Strict):
    """A message: ``{"role", "content"}``, with or without ``"type": "message"``.

    String content is read as one text part (``input_text``; ``output_text`` for the
    assistant), so every message holds a list of parts from here on.
    """

    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: list[ContentPart]
    id: str | None = Field(None, max_length=256)
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _string_is_one_part(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        if info.data.get("role") == "assistant":
            return [{"type": "output_text", "text": value, "annotations": []}]
        return [{"type": "input_text", "text": value}]

    @property
    def text(self) -> str:
        return "\n".join(_part_text(part) for part in self.content)

    def stored(self) -> dict[str, Any]:
        """The normalised item: an id, a type, a status, and the parts."""
        return {
            "id": self.id or new_item_id("msg"),
            "type": "message",
            "role": self.role,
            "content": [part.model_dump(mode="json", exclude_none=True) for part in self.content],
            "status": self.status or "completed",
        }


def _json_object(value: str) -> str:
    try:
        parsed = json.loads(value or "{}")
    except ValueError as exc:
        raise ValueError("function call arguments are not valid JSON") from exc
    if not isinstance(parsed, dict):
        raise ValueError("function call arguments must be a JSON object")
    return value


class FunctionCallItem(_Strict):
    """A call the model made earlier (``arguments``: a JSON object, as a string)."""

    type: Literal["function_call"]
    call_id: str = Field(..., min_length=1, max_length=256)
    name: str = Field(..., min_length=1, max_length=256)
    arguments: str = "{}"
    id: str | None = Field(None, max_length=256)
    status: ItemStatus | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None

    @field_validator("arguments")
    @classmethod
    def _arguments_object(cls, value: str) -> str:
        return _json_object(value)

    @field_validator("namespace")
    @classmethod
    def _no_namespace(cls, value: str | None) -> str | None:
        if value:
            raise _not_supported("namespaced function calls")
        return value

    def stored(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        data["id"] = self.id or new_item_id("fc")
        data["status"] = self.status or "completed"
        return data

    def to_tool_call(self) -> ToolCall:
        return ToolCall(self.call_id, self.name, json.loads(self.arguments or "{}"))


class FunctionCallOutputItem(_Strict):
    """The result of a call, sent back for the model to read."""

    type: Literal["function_call_output"]
    call_id: str = Field(..., min_length=1, max_length=256)
    output: str | list[ContentPart]
    id: str | None = Field(None, max_length=256)
    status: ItemStatus | None = None
    name: str | None = None
    namespace: str | None = None
    caller: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        if isinstance(self.output, str):
            return self.output
        return "".join(_part_text(part) for part in self.output)

    def stored(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        data["id"] = self.id or new_item_id("fco")
        data["status"] = self.status or "completed"
        return data


_ITEM_TYPES = ("message", "function_call", "function_call_output")


def _item_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type", "message")  # an "easy" message has no type
    else:
        kind = getattr(value, "type", None) or "message"
    return kind if kind in _ITEM_TYPES else None


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(
        _item_tag,
        custom_error_type="input_item_not_supported",
        custom_error_message=(
            "this input item type is not supported by this server (only message, "
            "function_call and function_call_output items are)"
        ),
    ),
]
_ITEMS = TypeAdapter(list[InputItem])


def parse_items(
    items: Iterable[dict[str, Any]],
) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
    """Stored items (JSON) back into their models."""
    return _ITEMS.validate_python(list(items))


def chat_messages(
    items: Sequence[MessageItem | FunctionCallItem | FunctionCallOutputItem],
) -> list[ChatMessage]:
    """The conversation the items describe, as the service takes it.

    Consecutive ``function_call`` items become the ``tool_calls`` of one assistant turn
    (of the assistant message just before them, when there is one, as a model writes text
    and then calls); a ``function_call_output`` becomes a ``tool`` turn that names its
    function, as templates such as Llama 3's expect, though only the call id comes back.
    """
    out: list[ChatMessage] = []
    names: dict[str, str] = {}
    for item in items:
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            out.append(ChatMessage(role=role, content=item.text))
        elif isinstance(item, FunctionCallItem):
            call = item.to_tool_call()
            names[call.id] = call.name
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                out[-1] = dataclasses.replace(last, tool_calls=(*last.tool_calls, call))
            else:
                out.append(ChatMessage(role="assistant", content="", tool_calls=(call,)))
        else:
            name = item.name or names.get(item.call_id)
            out.append(
                ChatMessage(role="tool", content=item.text, tool_call_id=item.call_id, name=name)
            )
    return out


# -- tools and formats ---------------------------------------------------------------------


class FunctionTool(_Strict):
    """``{"type": "function", "name", "description", "parameters", "strict"}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["function"]
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    # Newer options; accepted at their neutral value only.
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    async_: bool | None = Field(None, alias="async")
    defer_loading: bool | None = None
    output_schema: dict[str, Any] | None = None  # describes the tool's result: no effect

    @field_validator("allowed_callers")
    @classmethod
    def _direct_only(cls, value: list[str] | None) -> list[str] | None:
        if value and value != ["direct"]:
            raise _not_supported("programmatic tool callers")
        return value

    @field_validator("async_", "defer_loading")
    @classmethod
    def _falsy_only(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value:
            raise _not_supported(info.field_name.rstrip("_"))
        return value

    def to_spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description or "", self.parameters or {})

    def echoed(self) -> dict[str, Any]:
        """The tool as the response object lists it."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": self.strict if self.strict is not None else True,
        }


class FunctionToolChoice(_Strict):
    type: Literal["function"]
    name: str = Field(..., min_length=1)


class TextFormat(_Strict):
    """``text`` (the default), ``json_object``, or ``json_schema`` with its ``schema``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(None, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_when_asked(self) -> TextFormat:
        if self.type == "json_schema" and not isinstance(self.schema_, dict):
            raise ValueError("text.format json_schema needs 'schema' (an object)")
        return self

    def json_output(self) -> JsonOutput | None:
        if self.type == "text":
            return None
        return JsonOutput(schema=self.schema_ if self.type == "json_schema" else None)


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None

    @field_validator("verbosity")
    @classmethod
    def _medium_only(cls, value: str | None) -> str | None:
        if value not in (None, "medium"):
            raise _not_supported("verbosity other than 'medium'")
        return value


class ReasoningConfig(_Strict):
    """Accepted so reasoning-minded clients work; no bundled model reasons, so only
    ``effort`` may be set (and changes nothing)."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: str | None = None
    generate_summary: str | None = None
    context: str | None = None
    mode: str | None = None

    @field_validator("summary", "generate_summary", "context", "mode")
    @classmethod
    def _null_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise _not_supported(f"reasoning.{info.field_name}")
        return value


class ResponseStreamOptions(_Strict):
    include_obfuscation: bool | None = None  # accepted; there is nothing to obfuscate


# -- the request ------------------------------------------------------------------------------


class CreateResponseRequest(_Strict):
    """``POST /v1/responses``."""

    model: str | None = Field(None, description="Model id; the server's default if omitted.")
    input: list[InputItem]
    instructions: str | None = Field(
        None, description="A system message for this response only (not carried over)."
    )
    max_output_tokens: int | None = Field(None, ge=1, le=MAX_COUNT)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stream: bool | None = False
    stream_options: ResponseStreamOptions | None = None
    store: bool | None = True
    previous_response_id: str | None = Field(None, min_length=1, max_length=64)
    tools: list[FunctionTool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None
    top_logprobs: int | None = None
    # Accepted and ignored: bookkeeping hints with no effect on the output.
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None
    # Features of OpenAI's platform; accepted only when absent.
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    context_management: list[Any] | None = None
    prompt: dict[str, Any] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    access_programs: dict[str, Any] | None = None
    background_options: dict[str, Any] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _string_is_a_user_message(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"type": "message", "role": "user", "content": value}]
        if isinstance(value, list) and not value:
            raise ValueError("input must not be an empty list")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _function_tools_only(cls, value: Any) -> Any:
        for i, tool in enumerate(value if isinstance(value, list) else ()):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind != "function":
                raise ValueError(
                    f"tools[{i}] has type {kind!r}; only 'function' tools are supported by "
                    "this server (no built-in tools)"
                )
        return value

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _function_choice_only(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("type") != "function":
            raise _not_supported(f"tool_choice of type {value.get('type')!r}")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"metadata holds at most {MAX_METADATA_KEYS} keys")
        if any(len(k) > 64 or len(v) > 512 for k, v in value.items()):
            raise ValueError("metadata keys are at most 64 characters, values at most 512")
        return value

    @field_validator("truncation")
    @classmethod
    def _no_truncation(cls, value: str | None) -> str | None:
        if value == "auto":
            raise _not_supported("truncation 'auto' (an input too long is a 400)")
        return value

    @field_validator("include")
    @classmethod
    def _no_logprobs_include(cls, value: list[str] | None) -> list[str] | None:
        if value and "message.output_text.logprobs" in value:
            raise _not_supported("include 'message.output_text.logprobs'")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _no_top_logprobs(cls, value: int | None) -> int | None:
        if value:
            raise _not_supported("top_logprobs")
        return value

    @field_validator("background")
    @classmethod
    def _not_in_background(cls, value: bool | None) -> bool | None:
        if value:
            raise _not_supported("background responses")
        return value

    @field_validator(
        "conversation",
        "prompt",
        "prompt_cache_options",
        "moderation",
        "image",
        "access_programs",
        "background_options",
    )
    @classmethod
    def _null_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            raise _not_supported(info.field_name)
        return value

    @field_validator("context_management")
    @classmethod
    def _empty_only(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise _not_supported("context_management")
        return value

    @field_validator("stream_options")
    @classmethod
    def _stream_options_need_stream(
        cls, value: ResponseStreamOptions | None, info: ValidationInfo
    ) -> ResponseStreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("stream_options is only allowed when stream is true")
        return value

    # -- what the request asks of the service --

    def items(self) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
        """The input as items (a string was read as one user message)."""
        return list(self.input)

    def sampling_params(self) -> SamplingParams:
        """The engine's view of this request, with OpenAI's defaults filled in."""
        json_output = self.text.format.json_output() if self.text and self.text.format else None
        return SamplingParams(
            temperature=OPENAI_TEMPERATURE if self.temperature is None else self.temperature,
            top_p=OPENAI_TOP_P if self.top_p is None else self.top_p,
            max_tokens=self.max_output_tokens,
            json_output=json_output,
        )

    def tool_specs(self) -> list[ToolSpec]:
        """The functions the model may call."""
        return [tool.to_spec() for tool in self.tools or ()]

    def tool_choice_name(self) -> ToolChoice:
        """``auto`` (the default), ``none``, ``required`` or a function's name."""
        if isinstance(self.tool_choice, FunctionToolChoice):
            return self.tool_choice.name
        return self.tool_choice or "auto"

    def echoed_tool_choice(self) -> str | dict[str, str]:
        if isinstance(self.tool_choice, FunctionToolChoice):
            return {"type": "function", "name": self.tool_choice.name}
        return self.tool_choice or "auto"

    def echoed_text(self) -> dict[str, Any]:
        fmt = self.text.format if self.text and self.text.format else TextFormat(type="text")
        return {
            "format": fmt.model_dump(mode="json", by_alias=True, exclude_none=True),
            "verbosity": "medium",
        }


# -- other endpoints --------------------------------------------------------------------------


class InputItemsQuery(BaseModel):
    """``GET /v1/responses/{id}/input_items``: a page of the input items. Other query
    parameters (``include[]``: nothing to add here) are ignored, as for any GET."""

    after: str | None = None
    limit: int = Field(20, ge=1, le=100)
    order: Literal["asc", "desc"] = "desc"


class DeletedResponse(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True


# -- the response -----------------------------------------------------------------------------


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    """The assistant's text: one ``output_text`` part."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputText]


class FunctionCallOutput(BaseModel):
    """A call the model made; the client runs it and sends a ``function_call_output``."""

    id: str
    type: Literal["function_call"] = "function_call"
    status: ItemStatus
    call_id: str
    name: str
    arguments: str  # a JSON object, as a string

    @classmethod
    def of(cls, call: ToolCall, status: ItemStatus = "completed") -> FunctionCallOutput:
        arguments = json.dumps(dict(call.arguments), ensure_ascii=False)
        return cls(
            id=new_item_id("fc"), status=status, call_id=call.id, name=call.name,
            arguments=arguments,
        )  # fmt: skip


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int

    @classmethod
    def of(cls, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> ResponseUsage:
        return cls(
            input_tokens=input_tokens,
            input_tokens_details=InputTokensDetails(cached_tokens=cached_tokens),
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"]


class ResponseObject(BaseModel):
    """A response as OpenAI returns it (``output_text`` is computed by the SDK)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    completed_at: int | None = None
    error: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    model: str
    output: list[OutputMessage | FunctionCallOutput]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, Any]
    store: bool
    temperature: float
    text: dict[str, Any]
    tool_choice: str | dict[str, str]
    tools: list[dict[str, Any]]
    top_p: float
    top_logprobs: int = 0
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]
    background: bool = False
    service_tier: str = "default"
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @classmethod
    def start(
        cls, body: CreateResponseRequest, *, response_id: str, created_at: int, model: str
    ) -> ResponseObject:
        """The response as it begins (``in_progress``, no output): the request's settings
        echoed with OpenAI's defaults filled in."""
        effort = body.reasoning.effort if body.reasoning else None
        return cls(
            id=response_id,
            created_at=created_at,
            status="in_progress",
            instructions=body.instructions,
            max_output_tokens=body.max_output_tokens,
            max_tool_calls=body.max_tool_calls,
            model=model,
            output=[],
            parallel_tool_calls=body.parallel_tool_calls is not False,
            previous_response_id=body.previous_response_id,
            reasoning={"effort": effort, "summary": None},
            store=body.store is not False,
            temperature=OPENAI_TEMPERATURE if body.temperature is None else body.temperature,
            text=body.echoed_text(),
            tool_choice=body.echoed_tool_choice(),
            tools=[tool.echoed() for tool in body.tools or ()],
            top_p=OPENAI_TOP_P if body.top_p is None else body.top_p,
            usage=None,
            user=body.user,
            metadata=body.metadata or {},
            prompt_cache_key=body.prompt_cache_key,
            safety_identifier=body.safety_identifier,
        )
