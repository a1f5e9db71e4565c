"""Anthropic requests in the dialect-neutral terms the service takes.

- ``system`` becomes the first message (its text blocks joined by newlines).
- A user turn's text blocks become one ``user`` message; each ``tool_result`` block becomes
  a ``tool`` message naming the call it answers (and that call's function, looked up in the
  earlier ``tool_use`` blocks). Order is kept, so results precede the text that follows.
- An assistant turn's text is its content and its ``tool_use`` blocks its ``ToolCall``s.
- ``tool_choice`` ``any`` is the service's ``required``, ``tool`` the function's name.
"""

from __future__ import annotations

from ollm.api.anthropic import schemas as s
from ollm.chat.messages import ChatMessage, ToolCall, ToolChoice, ToolSpec
from ollm.sampling import JsonOutput, SamplingParams

ANTHROPIC_TEMPERATURE = 1.0
ANTHROPIC_TOP_P = 1.0
# How a failed tool's result reads to the model: chat templates have no error flag.
TOOL_ERROR_PREFIX = "Error: "


def chat_messages(body: s._Conversation) -> list[ChatMessage]:
    """The conversation of ``body``, system prompt first."""
    out: list[ChatMessage] = []
    if system := "\n".join(block.text for block in body.system):
        out.append(ChatMessage(role="system", content=system))
    names: dict[str, str] = {}  # tool_use id -> function name, for the results
    for message in body.messages:
        if message.role == "assistant":
            out.append(_assistant(message, names))
        else:
            out.extend(_user(message, names))
    return out


def _assistant(message: s.MessageIn, names: dict[str, str]) -> ChatMessage:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if isinstance(block, s.TextBlockIn):
            texts.append(block.text)
        elif isinstance(block, s.ToolUseBlockIn):
            names[block.id] = block.name
            calls.append(ToolCall(id=block.id, name=block.name, arguments=block.input))
    return ChatMessage(role="assistant", content="\n".join(texts), tool_calls=tuple(calls))


def _user(message: s.MessageIn, names: dict[str, str]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    texts: list[str] = []

    def flush_text() -> None:
        if texts:
            out.append(ChatMessage(role="user", content="\n".join(texts)))
            texts.clear()

    for block in message.content:
        if isinstance(block, s.TextBlockIn):
            texts.append(block.text)
        elif isinstance(block, s.ToolResultBlockIn):
            flush_text()
            content = (TOOL_ERROR_PREFIX if block.is_error else "") + block.text
            out.append(
                ChatMessage(
                    role="tool",
                    content=content,
                    tool_call_id=block.tool_use_id,
                    name=names.get(block.tool_use_id),
                )
            )
    flush_text()
    if not out:  # an empty block list: still a (blank) user turn, as the client sent one
        out.append(ChatMessage(role="user", content=""))
    return out


def tool_specs(body: s._Conversation) -> list[ToolSpec]:
    """The tools the model may call."""
    return [
        ToolSpec(name=tool.name, description=tool.description or "", parameters=tool.input_schema)
        for tool in body.tools or []
    ]


def tool_choice(body: s._Conversation) -> ToolChoice:
    """The service's tool choice for Anthropic's (``auto`` when none was given)."""
    choice = body.tool_choice
    if choice is None or choice.type == "auto":
        return "auto"
    if choice.type == "any":
        return "required"
    if choice.type == "none":
        return "none"
    assert choice.name is not None  # checked by the schema
    return choice.name


def sampling_params(body: s.MessagesRequest) -> SamplingParams:
    """The engine's view of ``body``, with Anthropic's defaults filled in (and a JSON
    constraint when ``output_config.format`` asks for one)."""
    output = body.output_config.format if body.output_config else None
    return SamplingParams(
        json_output=None if output is None else JsonOutput(schema=output.schema_),
        temperature=ANTHROPIC_TEMPERATURE if body.temperature is None else body.temperature,
        top_p=ANTHROPIC_TOP_P if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        max_tokens=body.max_tokens,
        stop=tuple(body.stop_sequences or ()),
    )
