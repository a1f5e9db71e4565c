"""The Anthropic dialect's serving layer: a Messages request in, a message (or its events) out.

Everything that can go wrong because of the request is raised by the service before a
byte is sent, and so is an ordinary error response in Anthropic's shape. A streamed reply
follows Anthropic's event sequence: ``message_start``, then per content block
``content_block_start`` / ``content_block_delta``... / ``content_block_stop`` (a ``ping``
after the first start), then ``message_delta`` (stop reason, usage) and ``message_stop``.

With tools, the reply's text is split into text and calls by the parser in
:mod:`ollm.chat.tool_calls`; each call becomes a ``tool_use`` block (streamed as one
``input_json_delta``, as the call is only known whole once its JSON has ended).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from typing import Any

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from ollm.api.anthropic import convert
from ollm.api.anthropic import schemas as s
from ollm.api.anthropic.sse import anthropic_sse
from ollm.api.http.streaming import (
    EventStreamResponse,
    cancel_on_disconnect,
    generation_failure,
    outputs,
)
from ollm.chat.messages import ToolCall
from ollm.chat.tool_calls import ToolCallStream, parse_tool_calls
from ollm.engine.outputs import RequestOutput
from ollm.errors import EngineError
from ollm.services.inference.completions import CompletionService, Generation

Event = dict[str, Any]


def _visible(output: RequestOutput) -> bool:
    """Whether a delta concerns the client; raises for failed generations.

    Queue-position updates are skipped: the Anthropic dialect has no place for them.
    """
    if output.finish_reason in ("error", "abort"):
        raise generation_failure(output)
    return bool(output.text) or output.finished


def _message_id(generation: Generation) -> str:
    return f"msg_{generation.request_id}"


def _tool_use_id(call: ToolCall) -> str:
    """Anthropic's id style for the parser's call id (same suffix, so still unique)."""
    return "toolu_" + call.id.removeprefix("call_")


def _usage(generation: Generation, output: RequestOutput) -> s.Usage:
    prompt = output.num_prompt_tokens or generation.num_prompt_tokens
    cached = min(output.num_cached_tokens, prompt)
    return s.Usage(
        input_tokens=prompt - cached,
        output_tokens=output.num_output_tokens,
        cache_read_input_tokens=cached,
    )


def _stop(output: RequestOutput, *, called: bool) -> tuple[s.StopReason, str | None]:
    """Anthropic's stop reason (and matched stop sequence) for how the generation ended."""
    if called:
        return "tool_use", None
    if output.finish_reason == "length":
        return "max_tokens", None
    if output.finish_reason == "stop" and output.stop_sequence is not None:
        return "stop_sequence", output.stop_sequence
    if output.finish_reason == "stop":
        return "end_turn", None
    raise EngineError("the generation ended without a finish reason")


async def create_message(
    body: s.MessagesRequest, service: CompletionService, caller: str, request: Request
) -> Response:
    """Serve ``POST /v1/messages``, streamed or not."""
    generation = await service.chat(
        model=body.model,
        messages=convert.chat_messages(body),
        params=convert.sampling_params(body),
        user=caller,
        tools=convert.tool_specs(body),
        tool_choice=convert.tool_choice(body),
    )
    if body.stream:
        return EventStreamResponse(anthropic_sse(_events(generation)))
    text, last = await cancel_on_disconnect(request, _collect(generation))
    parsed = parse_tool_calls(text, generation.tools)
    content: list[s.TextBlock | s.ToolUseBlock] = []
    if parsed.content or not parsed.calls:
        content.append(s.TextBlock(text=parsed.content))
    content.extend(
        s.ToolUseBlock(id=_tool_use_id(call), name=call.name, input=dict(call.arguments))
        for call in parsed.calls
    )
    stop_reason, stop_sequence = _stop(last, called=bool(parsed.calls))
    message = s.Message(
        id=_message_id(generation),
        model=generation.model_id,
        content=content,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=_usage(generation, last),
    )
    return JSONResponse(message.model_dump(mode="json"))


async def _collect(generation: Generation) -> tuple[str, RequestOutput]:
    """Run a generation to its end: its whole text and its last delta."""
    parts: list[str] = []
    last: RequestOutput | None = None
    async with aclosing(outputs(generation.stream)) as deltas:
        async for output in deltas:
            if _visible(output):
                parts.append(output.text)
                last = output
    if last is None or not last.finished:
        raise EngineError("the generation ended without a finish reason")
    return "".join(parts), last


async def count_tokens(body: s.CountTokensRequest, service: CompletionService) -> s.TokenCount:
    """Serve ``POST /v1/messages/count_tokens``: the prompt as the model would see it."""
    count = await service.count_chat_tokens(
        model=body.model,
        messages=convert.chat_messages(body),
        tools=convert.tool_specs(body),
        tool_choice=convert.tool_choice(body),
    )
    return s.TokenCount(input_tokens=count)


# -- streaming ----------------------------------------------------------------------------


class _Blocks:
    """Numbers the content blocks and writes their start, delta and stop events."""

    def __init__(self) -> None:
        self.count = 0
        self.text_open = False

    def text(self, piece: str) -> Iterator[Event]:
        """A piece of the text block, opening it first if need be."""
        if not self.text_open:
            self.text_open = True
            yield _block_start(self.count, {"type": "text", "text": ""})
        if piece:
            delta = {"type": "text_delta", "text": piece}
            yield {"type": "content_block_delta", "index": self.count, "delta": delta}

    def close_text(self) -> Iterator[Event]:
        if self.text_open:
            self.text_open = False
            yield {"type": "content_block_stop", "index": self.count}
            self.count += 1

    def tool_uses(self, calls: Sequence[ToolCall]) -> Iterator[Event]:
        for call in calls:
            block = {"type": "tool_use", "id": _tool_use_id(call), "name": call.name, "input": {}}
            yield _block_start(self.count, block)
            partial = json.dumps(dict(call.arguments), ensure_ascii=False)
            delta = {"type": "input_json_delta", "partial_json": partial}
            yield {"type": "content_block_delta", "index": self.count, "delta": delta}
            yield {"type": "content_block_stop", "index": self.count}
            self.count += 1


def _block_start(index: int, block: Event) -> Event:
    return {"type": "content_block_start", "index": index, "content_block": block}


async def _events(generation: Generation) -> AsyncIterator[Event]:
    start = s.Message(
        id=_message_id(generation),
        model=generation.model_id,
        content=[],
        stop_reason=None,
        usage=s.Usage(input_tokens=generation.num_prompt_tokens, output_tokens=0),
    )
    yield {"type": "message_start", "message": start.model_dump(mode="json")}
    blocks = _Blocks()
    # Without tools every piece is text, so the text block opens at once, as Anthropic's
    # does; with tools it opens only if some text turns out not to be a call.
    splitter = ToolCallStream(generation.tools) if generation.tools else None
    if splitter is None:
        for event in blocks.text(""):
            yield event
    yield {"type": "ping"}
    last: RequestOutput | None = None
    async with aclosing(outputs(generation.stream)) as deltas:
        async for output in deltas:
            if not _visible(output):
                continue
            piece = splitter.feed(output.text) if splitter is not None else output.text
            if piece:
                for event in blocks.text(piece):
                    yield event
            if output.finished:
                last = output
    if last is None:
        raise EngineError("the generation ended without a finish reason")
    calls: tuple[ToolCall, ...] = ()
    if splitter is not None:
        parsed = splitter.finish()
        calls = parsed.calls
        if parsed.content or not (calls or blocks.count or blocks.text_open):
            for event in blocks.text(parsed.content):  # the rest, or one empty block
                yield event
    for event in blocks.close_text():
        yield event
    for event in blocks.tool_uses(calls):
        yield event
    stop_reason, stop_sequence = _stop(last, called=bool(calls))
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": _usage(generation, last).model_dump(mode="json"),
    }
    yield {"type": "message_stop"}
