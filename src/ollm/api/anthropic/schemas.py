"""Request and response bodies of the Anthropic Messages dialect (``/v1/messages``).

Requests forbid unknown fields, as Anthropic's API does (a misspelt option is a 400 naming
it). Content blocks ollm cannot honour (``image``, ``document``, ``thinking``...) are a 400
saying which block and which type; ``cache_control`` hints are accepted and ignored (the
prefix cache works without them). Anthropic's defaults apply: temperature 1.0, top_p 1.0,
and ``max_tokens`` is required.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ollm.sampling import MAX_COUNT

MAX_STOP_SEQUENCES = 32
SUPPORTED_BLOCKS = ("text", "tool_use", "tool_result")
# Anthropic's rule for tool names.
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,128}$"

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


def _not_supported(what: str) -> ValueError:
    return ValueError(f"{what} is not supported by this server")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- content blocks -----------------------------------------------------------------------


class TextBlockIn(_Strict):
    """``{"type": "text", "text": ...}``."""

    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None
    citations: list[Any] | None = None

    @field_validator("citations")
    @classmethod
    def _no_citations(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise _not_supported("citations")
        return value


class ToolUseBlockIn(_Strict):
    """A call the assistant made earlier in the conversation."""

    type: Literal["tool_use"]
    id: str = Field(..., min_length=1)
    name: str = Field(..., min_length=1)
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class ToolResultBlockIn(_Strict):
    """The result of a call, sent back in a user turn; ``content`` is text or text blocks."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(..., min_length=1)
    content: list[TextBlockIn] = Field(default_factory=list)
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_blocks_only(cls, value: Any) -> Any:
        return _blocks(value, ("text",), where="tool_result content block")

    @property
    def text(self) -> str:
        """The result as one text."""
        return "\n".join(block.text for block in self.content)


ContentBlockIn = Annotated[
    TextBlockIn | ToolUseBlockIn | ToolResultBlockIn, Field(discriminator="type")
]


def _blocks(value: Any, allowed: tuple[str, ...], *, where: str) -> Any:
    """Content as a list of blocks: a string is one text block, None none. A block ollm
    has no use for is a clear 400 here, before pydantic tries each block type in turn."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        return value  # pydantic says what is wrong with it
    for i, block in enumerate(value):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind is None:
            raise ValueError(f"{where} {i} needs a 'type'")
        if kind not in allowed:
            names = ", ".join(f"'{a}'" for a in allowed)
            raise ValueError(
                f"{where} {i} has type {kind!r}, which this server does not support "
                f"(supported: {names})"
            )
    return value


class MessageIn(_Strict):
    """One turn: ``user`` or ``assistant``; content a string (one text block) or blocks."""

    role: Literal["user", "assistant"]
    content: list[ContentBlockIn]

    @field_validator("content", mode="before")
    @classmethod
    def _known_blocks(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a message needs 'content'")
        return _blocks(value, SUPPORTED_BLOCKS, where="content block")

    @model_validator(mode="after")
    def _blocks_fit_role(self) -> MessageIn:
        misplaced = "tool_result" if self.role == "assistant" else "tool_use"
        if any(block.type == misplaced for block in self.content):
            raise ValueError(f"'{misplaced}' blocks are not allowed in '{self.role}' messages")
        return self


# -- tools --------------------------------------------------------------------------------


class ToolIn(_Strict):
    """A client tool: its name, what it does, and a JSON schema of its input."""

    name: str = Field(..., pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError("input_schema must be a JSON schema of type 'object'")
        return value


class ToolChoiceIn(_Strict):
    """``auto`` (the model decides), ``any`` (some tool), ``tool`` (the one named), ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None  # accepted; the parser takes what comes

    @model_validator(mode="after")
    def _name_for_tool(self) -> ToolChoiceIn:
        if self.type == "tool" and not self.name:
            raise ValueError("tool_choice of type 'tool' needs the tool's 'name'")
        if self.type != "tool" and self.name is not None:
            raise ValueError(f"tool_choice of type '{self.type}' takes no 'name'")
        return self


class ThinkingIn(BaseModel):
    """Extended thinking: only ``{"type": "disabled"}`` for now."""

    model_config = ConfigDict(extra="allow")  # budget_tokens & co. belong to other types

    type: str

    @field_validator("type")
    @classmethod
    def _disabled_only(cls, value: str) -> str:
        if value != "disabled":
            raise _not_supported(f"thinking of type {value!r} (only 'disabled')")
        return value


class OutputFormatIn(_Strict):
    """Structured output: the reply is JSON matching ``schema``."""

    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(..., alias="schema")


class OutputConfigIn(_Strict):
    """``output_config``: ``format`` constrains decoding; ``effort`` is a hint for models
    that reason, accepted and without effect here."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormatIn | None = None


# -- requests -----------------------------------------------------------------------------


class _Conversation(_Strict):
    """What a prompt is made of: the fields ``/v1/messages`` and ``count_tokens`` share."""

    model: str | None = Field(None, description="Model id; the server's default if omitted.")
    system: list[TextBlockIn] = Field(default_factory=list, description="A string, or text blocks.")
    messages: list[MessageIn] = Field(..., min_length=1)
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None
    thinking: ThinkingIn | None = None

    @field_validator("system", mode="before")
    @classmethod
    def _system_text_blocks(cls, value: Any) -> Any:
        return _blocks(value, ("text",), where="system block")


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    max_tokens: int = Field(..., ge=1, le=MAX_COUNT, description="Most tokens to generate.")
    stop_sequences: list[str] | None = Field(
        None, description=f"Up to {MAX_STOP_SEQUENCES} strings that end the reply."
    )
    temperature: float | None = Field(None, ge=0.0, le=1.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=MAX_COUNT)
    metadata: dict[str, Any] | None = None  # user_id: accepted, not used
    stream: bool | None = False
    output_config: OutputConfigIn | None = None
    # Accepted and ignored: one tier, one place and one speed here, and the prefix cache
    # works without hints.
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None
    cache_control: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _no_prefill(cls, value: list[MessageIn]) -> list[MessageIn]:
        # Anthropic continues a final assistant turn; a chat template can only start a new
        # one, so the reply would silently differ from what the client asked for.
        if value and value[-1].role == "assistant":
            raise _not_supported("prefilling the reply (a final 'assistant' message)")
        return value

    @field_validator("stop_sequences")
    @classmethod
    def _check_stops(cls, value: list[str] | None) -> list[str] | None:
        if value and len(value) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
        if value and any(not s for s in value):
            raise ValueError("stop sequences must not be empty")
        return value


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``: the prompt alone."""


# -- responses ----------------------------------------------------------------------------


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class Usage(BaseModel):
    """Token counts, as Anthropic counts them: ``input_tokens`` are the prompt tokens that
    were computed, ``cache_read_input_tokens`` those reused from the prefix cache."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(BaseModel):
    """The assistant's reply (non-streamed, and the skeleton of ``message_start``)."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None = None
    usage: Usage


class TokenCount(BaseModel):
    """``count_tokens``' answer."""

    input_tokens: int
