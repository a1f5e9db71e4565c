"""The OpenAI dialect's serving layer: requests in, generations run, responses out.

Everything that can go wrong because of the request is raised by the service before a
byte is sent, and so becomes an ordinary error response. Once a stream has started,
failures become one final error event (see :func:`ollm.api.http.streaming.sse_stream`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import cast

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from ollm.api.http.streaming import (
    EventStreamResponse,
    cancel_on_disconnect,
    generation_failure,
    outputs,
    sse_stream,
)
from ollm.api.openai import schemas as s
from ollm.chat.reasoning import ReasoningStream, SplitReply, split_reasoning
from ollm.chat.tool_calls import ToolCallStream, parse_tool_calls
from ollm.engine.outputs import RequestOutput
from ollm.errors import EngineError
from ollm.services.inference.completions import CompletionService, Generation


@dataclass(slots=True)
class Collected:
    """A whole generation, gathered for a non-streamed response."""

    text: str
    finish_reason: s.FinishReason
    usage: s.Usage


def _visible(output: RequestOutput) -> bool:
    """Whether a delta concerns the client; raises for failed generations.

    Queue-position updates are skipped: the OpenAI dialect has no place for them.
    """
    if output.finish_reason in ("error", "abort"):
        raise generation_failure(output)
    return bool(output.text) or output.finished


def _usage(generation: Generation, output: RequestOutput) -> s.Usage:
    prompt = output.num_prompt_tokens or generation.num_prompt_tokens
    return s.Usage.of(prompt, output.num_output_tokens, output.num_cached_tokens)


async def collect(generation: Generation) -> Collected:
    """Run a generation to its end and gather its text."""
    parts: list[str] = []
    last: RequestOutput | None = None
    async with aclosing(outputs(generation.stream)) as deltas:
        async for output in deltas:
            if _visible(output):
                parts.append(output.text)
                last = output
    if last is None or last.finish_reason not in ("stop", "length"):
        raise EngineError("the generation ended without a finish reason")
    reason = cast(s.FinishReason, last.finish_reason)
    return Collected("".join(parts), reason, _usage(generation, last))


# -- chat ---------------------------------------------------------------------------------


async def chat_completion(
    body: s.ChatCompletionRequest, service: CompletionService, caller: str, request: Request
) -> Response:
    """Serve ``POST /v1/chat/completions``, streamed or not."""
    generation = await service.chat(
        model=body.model,
        messages=body.chat_messages(),
        params=body.sampling_params(),
        user=caller,
        tools=body.tool_specs(),
        tool_choice=body.tool_choice_name(),
    )
    if body.stream:
        events = _chat_events(generation, include_usage=body.include_usage)
        return EventStreamResponse(sse_stream(events))
    result = await cancel_on_disconnect(request, collect(generation))
    split = split_reasoning(result.text, started=generation.thinking_open)
    reasoning = split.reasoning or None
    parsed = parse_tool_calls(split.content, generation.tools)
    message = s.AssistantMessage(content=split.content, reasoning_content=reasoning)
    reason = result.finish_reason
    if parsed.calls:
        message = s.AssistantMessage(
            content=parsed.content or None,
            reasoning_content=reasoning,
            tool_calls=[s.ToolCallOut.of(call) for call in parsed.calls],
        )
        reason = "tool_calls"
    response = s.ChatCompletion(
        id=f"chatcmpl-{generation.request_id}",
        created=generation.created,
        model=generation.model_id,
        choices=[s.ChatChoice(message=message, finish_reason=reason)],
        usage=result.usage,
    )
    return JSONResponse(response.model_dump(mode="json"))


async def _chat_events(
    generation: Generation, *, include_usage: bool
) -> AsyncIterator[s.ChatCompletionChunk]:
    def chunk(
        choices: list[s.ChatChunkChoice], usage: s.Usage | None = None
    ) -> s.ChatCompletionChunk:
        return s.ChatCompletionChunk(
            id=f"chatcmpl-{generation.request_id}",
            created=generation.created,
            model=generation.model_id,
            choices=choices,
            usage=usage,
        )

    def delta(**fields: object) -> s.ChatCompletionChunk:
        return chunk([s.ChatChunkChoice(delta=s.ChatDelta(**fields))])  # type: ignore[arg-type]

    started = False
    split = ReasoningStream(started=generation.thinking_open)
    calls = ToolCallStream(generation.tools)
    async with aclosing(outputs(generation.stream)) as deltas:
        async for output in deltas:
            if not _visible(output):
                continue
            if not started:  # OpenAI opens with the role, before any content
                started = True
                yield delta(role="assistant", content="")
            part = split.feed(output.text) if output.text else SplitReply("", "")
            if output.finished:
                tail = split.finish()
                part = SplitReply(part.reasoning + tail.reasoning, part.content + tail.content)
            if part.reasoning:  # thinking travels apart from the answer (vLLM's field)
                yield delta(reasoning_content=part.reasoning)
            text = calls.feed(part.content) if part.content else ""
            if text:
                yield delta(content=text)
            if output.finished:
                reason = output.finish_reason
                rest = calls.finish()
                if rest.content:
                    yield delta(content=rest.content)
                for index, call in enumerate(rest.calls):
                    # The call's head (id, name), then its arguments: what OpenAI sends.
                    head = s.ToolCallOut.of(call)
                    yield delta(
                        tool_calls=[
                            s.ToolCallDelta(
                                index=index,
                                id=call.id,
                                type="function",
                                function=s.FunctionDelta(name=call.name),
                            )
                        ]
                    )
                    yield delta(
                        tool_calls=[
                            s.ToolCallDelta(
                                index=index,
                                function=s.FunctionDelta(arguments=head.function.arguments),
                            )
                        ]
                    )
                if rest.calls:
                    reason = "tool_calls"
                yield chunk([s.ChatChunkChoice(delta=s.ChatDelta(), finish_reason=reason)])
                if include_usage:
                    yield chunk([], usage=_usage(generation, output))


# -- legacy completions -------------------------------------------------------------------


async def completion(
    body: s.CompletionRequest, service: CompletionService, caller: str, request: Request
) -> Response:
    """Serve ``POST /v1/completions``, streamed or not."""
    generation = await service.complete(
        model=body.model, prompt=body.prompt, params=body.sampling_params(), user=caller
    )
    if body.stream:
        events = _completion_events(generation, include_usage=body.include_usage)
        return EventStreamResponse(sse_stream(events))
    result = await cancel_on_disconnect(request, collect(generation))
    response = s.Completion(
        id=f"cmpl-{generation.request_id}",
        created=generation.created,
        model=generation.model_id,
        choices=[s.CompletionChoice(text=result.text, finish_reason=result.finish_reason)],
        usage=result.usage,
    )
    return JSONResponse(response.model_dump(mode="json"))


async def _completion_events(
    generation: Generation, *, include_usage: bool
) -> AsyncIterator[s.Completion]:
    def chunk(choices: list[s.CompletionChoice], usage: s.Usage | None = None) -> s.Completion:
        return s.Completion(
            id=f"cmpl-{generation.request_id}",
            created=generation.created,
            model=generation.model_id,
            choices=choices,
            usage=usage,
        )

    async with aclosing(outputs(generation.stream)) as deltas:
        async for output in deltas:
            if not _visible(output):
                continue
            reason = cast(s.FinishReason | None, output.finish_reason)
            yield chunk([s.CompletionChoice(text=output.text, finish_reason=reason)])
            if output.finished and include_usage:
                yield chunk([], usage=_usage(generation, output))
