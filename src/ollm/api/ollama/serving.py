"""The Ollama dialect's generation endpoints: ``/api/chat`` and ``/api/generate``.

As in the OpenAI dialect, everything that can fail because of the request fails before
a byte is sent and becomes an ordinary ``{"error": ...}`` response; once a stream has
begun, a failure becomes one final error line. Unlike OpenAI, Ollama streams by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from ollm.api.http.streaming import cancel_on_disconnect, generation_failure, outputs
from ollm.api.ollama import schemas as s
from ollm.api.ollama.ndjson import NDJSONResponse, ndjson_stream
from ollm.api.ollama.timing import Timer
from ollm.chat.messages import ChatMessage, ToolCall
from ollm.chat.reasoning import ReasoningStream, SplitReply, split_reasoning
from ollm.chat.tool_calls import ToolCallStream, parse_tool_calls
from ollm.errors import ContextLengthExceededError, EngineError
from ollm.sampling import SamplingParams
from ollm.services.inference.completions import CompletionService, Generation
from ollm.services.models.service import ModelService

Chunk = s.ChatChunk | s.GenerateChunk
Wrap = Callable[[str, s.DoneReason | None, s.Stats | None, Sequence[ToolCall], str], Chunk]
"""Builds one response object of a dialect endpoint from text, done reason, stats, the
tool calls made (chat only) and thinking."""


def now_rfc3339() -> str:
    """The current time as Ollama writes it: RFC 3339, UTC, microseconds."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def chat_wrap(model_id: str) -> Wrap:
    """Objects of ``/api/chat`` for ``model_id``."""

    def wrap(
        text: str,
        reason: s.DoneReason | None = None,
        stats: s.Stats | None = None,
        calls: Sequence[ToolCall] = (),
        thinking: str = "",
    ) -> Chunk:
        return s.ChatChunk(
            model=model_id,
            created_at=now_rfc3339(),
            message=s.AssistantMessage.of(text, calls, thinking),
            done=reason is not None,
            done_reason=reason,
            **(stats.model_dump() if stats else {}),
        )

    return wrap


def generate_wrap(model_id: str) -> Wrap:
    """Objects of ``/api/generate`` for ``model_id``."""

    def wrap(
        text: str,
        reason: s.DoneReason | None = None,
        stats: s.Stats | None = None,
        calls: Sequence[ToolCall] = (),
        thinking: str = "",
    ) -> Chunk:
        return s.GenerateChunk(
            model=model_id,
            created_at=now_rfc3339(),
            response=text,
            thinking=thinking or None,
            done=reason is not None,
            done_reason=reason,
            **(stats.model_dump() if stats else {}),
        )

    return wrap


# -- endpoints ----------------------------------------------------------------------------


async def chat(
    body: s.ChatRequest,
    service: CompletionService,
    models: ModelService,
    caller: str,
    request: Request,
) -> Response:
    """Serve ``POST /api/chat``."""
    timer = Timer()
    if not body.messages:
        return await load_or_unload(models, body.model_name, body.keep_alive, chat_wrap)
    messages = body.chat_messages()
    params = body.sampling_params(context_length=_context_length(models))

    def start(p: SamplingParams) -> Awaitable[Generation]:
        return service.chat(
            model=body.model_name,
            messages=messages,
            params=p,
            user=caller,
            keep_alive=body.keep_alive,
            tools=body.tool_specs(),
        )

    generation = await start_generation(start, params)
    timer.mark_queued()
    wrap = chat_wrap(generation.model_id)
    return await respond(generation, timer, wrap, body.stream, request, think=body.shows_thinking())


async def generate(
    body: s.GenerateRequest,
    service: CompletionService,
    models: ModelService,
    caller: str,
    request: Request,
) -> Response:
    """Serve ``POST /api/generate``: raw, or the prompt as a user turn of the template."""
    timer = Timer()
    if not body.prompt:
        return await load_or_unload(models, body.model_name, body.keep_alive, generate_wrap)
    params = body.sampling_params(context_length=_context_length(models))
    templated = (
        not body.raw
        and body.suffix is None
        and (await models.get(body.model_name)).template is not None
    )

    def start(p: SamplingParams) -> Awaitable[Generation]:
        if templated:
            return service.chat(
                model=body.model_name,
                messages=_generate_messages(body),
                params=p,
                user=caller,
                keep_alive=body.keep_alive,
            )
        prompt = body.prompt if body.raw or not body.system else f"{body.system}\n\n{body.prompt}"
        return service.complete(
            model=body.model_name,
            prompt=prompt,
            params=p,
            user=caller,
            keep_alive=body.keep_alive,
            suffix=body.suffix,
        )

    generation = await start_generation(start, params)
    timer.mark_queued()
    wrap = generate_wrap(generation.model_id)
    return await respond(generation, timer, wrap, body.stream, request, think=body.shows_thinking())


def _generate_messages(body: s.GenerateRequest) -> list[ChatMessage]:
    system = [ChatMessage(role="system", content=body.system)] if body.system else []
    return [*system, ChatMessage(role="user", content=body.prompt)]


def _context_length(models: ModelService) -> int:
    """What ``repeat_last_n = -1`` means: the server's per-sequence context."""
    return models.settings.engine.context_per_sequence


async def load_or_unload(
    models: ModelService,
    name: str | None,
    keep_alive: float | None,
    wrap_for: Callable[[str], Wrap],
) -> Response:
    """An empty request: load the model (``done_reason: "load"``), or with
    ``keep_alive: 0`` unload it (``"unload"``). One object, streamed or not, as Ollama."""
    if keep_alive == 0:
        entry = models.resolve(name)
        await models.unload(entry.model_id)
        model_id, reason = entry.model_id, cast(s.DoneReason, "unload")
    else:
        loaded = await models.get(name, keep_alive=keep_alive)
        model_id, reason = loaded.model_id, cast(s.DoneReason, "load")
    return JSONResponse(wrap_for(model_id)("", reason, None, (), "").to_json())


async def start_generation(
    start: Callable[[SamplingParams], Awaitable[Generation]], params: SamplingParams
) -> Generation:
    """Start a generation; a ``num_predict`` past the end of the context is not an error
    in Ollama, so it becomes "until the context is full" (``done_reason: "length"``)."""
    try:
        return await start(params)
    except ContextLengthExceededError as exc:
        prompt, limit = exc.details.get("prompt_tokens"), exc.details.get("context_length")
        fits = isinstance(prompt, int) and isinstance(limit, int) and prompt < limit
        if params.max_tokens is None or not fits:
            raise
    return await start(replace(params, max_tokens=None))


# -- responses ----------------------------------------------------------------------------


async def _pieces(
    generation: Generation, timer: Timer
) -> AsyncIterator[tuple[str, s.DoneReason | None, s.Stats | None]]:
    """(text, done reason, stats) for each delta that concerns the client; raises if the
    engine failed. Queue-position updates are skipped: Ollama has no place for them."""
    async with aclosing(outputs(generation.stream)) as deltas:
        async for output in deltas:
            if output.finish_reason in ("error", "abort"):
                raise generation_failure(output)
            timer.observe(output)
            if not output.finished:
                if output.text:
                    yield output.text, None, None
                continue
            stats = timer.stats(
                prompt_tokens=output.num_prompt_tokens or generation.num_prompt_tokens,
                output_tokens=output.num_output_tokens,
            )
            yield output.text, cast(s.DoneReason, output.finish_reason), stats
            return
    raise EngineError("the generation ended without a finish reason")


async def _stream(
    generation: Generation, timer: Timer, wrap: Wrap, think: bool
) -> AsyncIterator[Chunk]:
    """Ollama's stream: text (and thinking) pieces, then a final empty piece with the
    stats. Tool calls come whole, in one piece of their own before the last, as Ollama
    sends them."""
    split = ReasoningStream(started=generation.thinking_open)
    calls = ToolCallStream(generation.tools)
    async with aclosing(_pieces(generation, timer)) as pieces:
        async for text, reason, stats in pieces:
            part = split.feed(text) if text else SplitReply("", "")
            if reason is not None:
                tail = split.finish()
                part = SplitReply(part.reasoning + tail.reasoning, part.content + tail.content)
            shown = calls.feed(part.content) if part.content else ""
            thinking = part.reasoning if think else ""
            if thinking:  # its own piece, before the answer's, as Ollama streams them
                yield wrap("", None, None, (), thinking)
            if shown:
                yield wrap(shown, None, None, (), "")
            if reason is not None:
                rest = calls.finish()
                if rest.content or rest.calls:
                    yield wrap(rest.content, None, None, rest.calls, "")
                yield wrap("", reason, stats, (), "")


async def _collect(generation: Generation, timer: Timer, wrap: Wrap, think: bool) -> Chunk:
    """The whole generation as one object."""
    parts: list[str] = []
    async with aclosing(_pieces(generation, timer)) as pieces:
        async for text, reason, stats in pieces:
            parts.append(text)
            if reason is not None:
                split = split_reasoning("".join(parts), started=generation.thinking_open)
                parsed = parse_tool_calls(split.content, generation.tools)
                thinking = split.reasoning if think else ""
                return wrap(parsed.content, reason, stats, parsed.calls, thinking)
    raise EngineError("the generation ended without a finish reason")


async def respond(
    generation: Generation,
    timer: Timer,
    wrap: Wrap,
    stream: bool,
    request: Request,
    *,
    think: bool = True,
) -> Response:
    """NDJSON chunks when streaming, else one JSON object; a disconnect aborts either.
    ``think``: return the model's thinking (it is kept out of the answer either way)."""
    if stream:
        return NDJSONResponse(ndjson_stream(_stream(generation, timer, wrap, think)))
    chunk = await cancel_on_disconnect(request, _collect(generation, timer, wrap, think))
    return JSONResponse(chunk.to_json())
