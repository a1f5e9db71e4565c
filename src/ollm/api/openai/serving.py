"""The OpenAI dialect's serving layer: requests in, generations run, responses out.

Everything that can go wrong because of the request is raised by the service before a
byte is sent, and so becomes an ordinary error response. Once a stream has started,
failures become one final error event (see :func:`ollm.api.http.streaming.sse_stream`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import cast

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from ollm.api.http.streaming import (
    EventStreamResponse,
    cancel_on_disconnect,
    generation_failure,
    merged,
    outputs,
    sse_stream,
)
from ollm.api.openai import schemas as s
from ollm.chat.reasoning import ReasoningStream, SplitReply, split_reasoning
from ollm.chat.tool_calls import ToolCallStream, parse_tool_calls
from ollm.engine.outputs import RequestOutput, TokenLogprob
from ollm.errors import EngineError
from ollm.services.inference.completions import CompletionService, Generation
from ollm.services.models.leases import LeasedStream


@dataclass(slots=True)
class Collected:
    """A whole generation (one choice), gathered for a non-streamed response."""

    text: str
    finish_reason: s.FinishReason
    usage: s.Usage
    logprobs: tuple[TokenLogprob, ...] = ()


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


def _total_usage(usages: Sequence[s.Usage], prompts: Sequence[s.Usage]) -> s.Usage:
    """Every choice's completion tokens; each prompt's tokens once (``prompts``: one
    usage per prompt, its first choice's), however many choices shared it."""
    return s.Usage.of(
        sum(u.prompt_tokens for u in prompts),
        sum(u.completion_tokens for u in usages),
        sum(u.prompt_tokens_details.cached_tokens for u in prompts),
    )


async def collect(generation: Generation, stream: LeasedStream | None = None) -> Collected:
    """Run one choice of a generation (the first by default) to its end; gather it."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    last: RequestOutput | None = None
    async with aclosing(outputs(stream or generation.stream)) as deltas:
        async for output in deltas:
            logprobs.extend(output.logprobs)  # a held-back token has them but no text yet
            if _visible(output):
                parts.append(output.text)
                last = output
    if last is None or last.finish_reason not in ("stop", "length"):
        raise EngineError("the generation ended without a finish reason")
    reason = cast(s.FinishReason, last.finish_reason)
    return Collected("".join(parts), reason, _usage(generation, last), tuple(logprobs))


async def collect_all(generations: Sequence[Generation]) -> list[list[Collected]]:
    """Every choice of every generation, run together; the first failure (or a cancel)
    aborts the rest."""
    tasks = [
        [asyncio.ensure_future(collect(g, stream)) for stream in g.streams] for g in generations
    ]
    flat = [task for row in tasks for task in row]
    try:
        await asyncio.gather(*flat)
        return [[task.result() for task in row] for row in tasks]
    finally:
        for task in flat:
            task.cancel()
        await asyncio.gather(*flat, return_exceptions=True)


# -- chat ---------------------------------------------------------------------------------


async def chat_completion(
    body: s.ChatCompletionRequest, service: CompletionService, caller: str, request: Request
) -> Response:
    """Serve ``POST /v1/chat/completions``, streamed or not (``n`` choices)."""
    generation = await service.chat(
        model=body.model,
        messages=body.chat_messages(),
        params=body.sampling_params(),
        user=caller,
        tools=body.tool_specs(),
        tool_choice=body.tool_choice_name(),
        n=body.num_choices,
    )
    if body.stream:
        events = _chat_stream(generation, body)
        return EventStreamResponse(sse_stream(events))
    [results] = await cancel_on_disconnect(request, collect_all([generation]))
    response = s.ChatCompletion(
        id=f"chatcmpl-{generation.request_id}",
        created=generation.created,
        model=generation.model_id,
        choices=[
            _chat_choice(generation, index, result, logprobs=bool(body.logprobs))
            for index, result in enumerate(results)
        ],
        usage=_total_usage([r.usage for r in results], [results[0].usage]),
    )
    return JSONResponse(response.model_dump(mode="json"))


def _chat_choice(
    generation: Generation, index: int, result: Collected, *, logprobs: bool
) -> s.ChatChoice:
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
    scored = s.ChatLogprobs.of(result.logprobs) if logprobs else None
    return s.ChatChoice(index=index, message=message, logprobs=scored, finish_reason=reason)


async def _chat_stream(
    generation: Generation, body: s.ChatCompletionRequest
) -> AsyncIterator[s.ChatCompletionChunk]:
    """Every choice's chunks as they come, then the usage chunk if asked for."""
    finals: list[RequestOutput] = []
    choices = [
        _chat_events(generation, stream, index, finals, logprobs=bool(body.logprobs))
        for index, stream in enumerate(generation.streams)
    ]
    async with aclosing(merged(choices)) as chunks:
        async for chunk in chunks:
            yield chunk
    if body.include_usage and finals:
        usages = [_usage(generation, final) for final in finals]
        yield _chat_chunk(generation, [], _total_usage(usages, usages[:1]))


def _chat_chunk(
    generation: Generation, choices: list[s.ChatChunkChoice], usage: s.Usage | None = None
) -> s.ChatCompletionChunk:
    return s.ChatCompletionChunk(
        id=f"chatcmpl-{generation.request_id}",
        created=generation.created,
        model=generation.model_id,
        choices=choices,
        usage=usage,
    )


async def _chat_events(
    generation: Generation,
    stream: LeasedStream,
    index: int,
    finals: list[RequestOutput],
    *,
    logprobs: bool,
) -> AsyncIterator[s.ChatCompletionChunk]:
    """One choice's chunks. Token logprobs ride on the next chunk sent after their
    tokens (text a tool call or a stop string held back goes out later, or never)."""
    pending: list[TokenLogprob] = []

    def chunk(delta: s.ChatDelta, reason: s.FinishReason | None = None) -> s.ChatCompletionChunk:
        scored = None
        if logprobs and pending:
            scored = s.ChatLogprobs.of(tuple(pending))
            pending.clear()
        choice = s.ChatChunkChoice(index=index, delta=delta, logprobs=scored, finish_reason=reason)
        return _chat_chunk(generation, [choice])

    def delta(**fields: object) -> s.ChatCompletionChunk:
        return chunk(s.ChatDelta(**fields))  # type: ignore[arg-type]

    started = False
    split = ReasoningStream(started=generation.thinking_open)
    calls = ToolCallStream(generation.tools)
    async with aclosing(outputs(stream)) as deltas:
        async for output in deltas:
            pending.extend(output.logprobs)
            if not _visible(output):
                continue
            if not started:  # OpenAI opens with the role, before any content
                started = True
                yield _chat_chunk(
                    generation,
                    [
                        s.ChatChunkChoice(
                            index=index, delta=s.ChatDelta(role="assistant", content="")
                        )
                    ],
                )
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
                finals.append(output)
                reason = cast(s.FinishReason, output.finish_reason)
                rest = calls.finish()
                if rest.content:
                    yield delta(content=rest.content)
                for call_index, call in enumerate(rest.calls):
                    # The call's head (id, name), then its arguments: what OpenAI sends.
                    head = s.ToolCallOut.of(call)
                    yield delta(
                        tool_calls=[
                            s.ToolCallDelta(
                                index=call_index,
                                id=call.id,
                                type="function",
                                function=s.FunctionDelta(name=call.name),
                            )
                        ]
                    )
                    yield delta(
                        tool_calls=[
                            s.ToolCallDelta(
                                index=call_index,
                                function=s.FunctionDelta(arguments=head.function.arguments),
                            )
                        ]
                    )
                if rest.calls:
                    reason = "tool_calls"
                yield chunk(s.ChatDelta(), reason)


# -- legacy completions -------------------------------------------------------------------


async def completion(
    body: s.CompletionRequest, service: CompletionService, caller: str, request: Request
) -> Response:
    """Serve ``POST /v1/completions``, streamed or not: ``n`` choices for each prompt,
    indexed prompt by prompt."""
    generations: list[Generation] = []
    try:
        for prompt in body.prompts():
            generation = await service.complete(
                model=body.model,
                prompt=prompt,
                params=body.sampling_params(),
                user=caller,
                suffix=body.suffix,
                n=body.num_choices,
            )
            generations.append(generation)
    except BaseException:
        for generation in generations:  # the prompts before a bad one must not run on
            await generation.aclose()
        raise
    first = generations[0]
    if body.stream:
        return EventStreamResponse(sse_stream(_completion_stream(generations, body)))
    results = await cancel_on_disconnect(request, collect_all(generations))
    choices = []
    for generation, row in zip(generations, results, strict=True):
        echo = generation.prompt_text if body.echo else ""
        for result in row:
            scored = None
            if body.logprobs is not None:
                scored = s.CompletionLogprobs.of(
                    result.logprobs, offset=len(echo), top=body.logprobs
                )
            choices.append(
                s.CompletionChoice(
                    index=len(choices),
                    text=echo + result.text,
                    logprobs=scored,
                    finish_reason=result.finish_reason,
                )
            )
    usages = [result.usage for row in results for result in row]
    response = s.Completion(
        id=f"cmpl-{first.request_id}",
        created=first.created,
        model=first.model_id,
        choices=choices,
        usage=_total_usage(usages, [row[0].usage for row in results]),
    )
    return JSONResponse(response.model_dump(mode="json"))


async def _completion_stream(
    generations: list[Generation], body: s.CompletionRequest
) -> AsyncIterator[s.Completion]:
    """Every choice's chunks as they come, all under the first prompt's id (one
    response), then the usage chunk if asked for."""
    first = generations[0]
    usages: dict[int, s.Usage] = {}
    choices = []
    for generation in generations:
        for stream in generation.streams:
            index = len(choices)
            choices.append(_completion_events(first, generation, stream, index, body, usages))
    async with aclosing(merged(choices)) as chunks:
        async for chunk in chunks:
            yield chunk
    if body.include_usage and len(usages) == len(choices):
        ordered = [usages[i] for i in range(len(choices))]
        prompts = ordered[:: body.num_choices]  # each prompt's first choice
        yield _completion_chunk(first, [], _total_usage(ordered, prompts))


def _completion_chunk(
    generation: Generation, choices: list[s.CompletionChoice], usage: s.Usage | None = None
) -> s.Completion:
    return s.Completion(
        id=f"cmpl-{generation.request_id}",
        created=generation.created,
        model=generation.model_id,
        choices=choices,
        usage=usage,
    )


async def _completion_events(
    response: Generation,
    generation: Generation,
    stream: LeasedStream,
    index: int,
    body: s.CompletionRequest,
    usages: dict[int, s.Usage],
) -> AsyncIterator[s.Completion]:
    """One choice's chunks (framed as ``response``'s): the echoed prompt first if asked,
    then the text as it comes; its usage goes into ``usages`` when it ends."""
    echo = generation.prompt_text if body.echo else ""
    offset = len(echo)
    pending: list[TokenLogprob] = []
    async with aclosing(outputs(stream)) as deltas:
        async for output in deltas:
            pending.extend(output.logprobs)
            if not _visible(output):
                continue
            scored = None
            if body.logprobs is not None:
                scored = s.CompletionLogprobs.of(tuple(pending), offset=offset, top=body.logprobs)
                offset += sum(len(t) for t in scored.tokens)
                pending.clear()
            if output.finished:
                usages[index] = _usage(generation, output)
            reason = cast(s.FinishReason | None, output.finish_reason)
            text, echo = echo + output.text, ""
            choice = s.CompletionChoice(
                index=index, text=text, logprobs=scored, finish_reason=reason
            )
            yield _completion_chunk(response, [choice])
