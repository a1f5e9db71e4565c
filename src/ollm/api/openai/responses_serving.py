"""The Responses API's serving layer: a request in, a generation run, a response out.

1. The conversation: this request's ``instructions`` (a system message for this response
   only), then, with ``previous_response_id``, the stored responses it continues (each
   one's input items and output items, oldest first), then the new input items.
2. Generation goes through :meth:`CompletionService.chat`, so rendering, fitting and
   tools work as for chat completions; every failure there is an ordinary 4xx.
3. The reply becomes a ``message`` item with one ``output_text`` part, plus one
   ``function_call`` item per call the model made to the request's tools
   (:mod:`ollm.chat.tool_calls` finds them). A reply cut by ``max_output_tokens`` is
   ``incomplete``.
4. With ``store`` (the default), the response is saved for its owner before it is
   returned (streamed: before ``response.completed``), so a follow-up can name it.

Streamed, the events are those OpenAI sends, each as ``event: <type>`` plus ``data:``
with a ``sequence_number``; a failure after the headers is one final ``error`` event.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from ollm.api.http.streaming import (
    EventStreamResponse,
    cancel_on_disconnect,
    generation_failure,
    outputs,
)
from ollm.api.openai import responses_schemas as rs
from ollm.api.openai.serving import collect
from ollm.chat.messages import ChatMessage, ToolCall
from ollm.chat.tool_calls import ToolCallStream, parse_tool_calls
from ollm.engine.outputs import RequestOutput
from ollm.errors import EngineError, InvalidRequestError, OllmError
from ollm.services.inference.completions import CompletionService, Generation
from ollm.services.responses.service import ResponseService

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Turn:
    """One request, resolved: what it asks, for whom, and where its result goes."""

    body: rs.CreateResponseRequest
    owner_id: int
    responses: ResponseService
    items: list[rs.MessageItem | rs.FunctionCallItem | rs.FunctionCallOutputItem]

    async def conversation(self) -> list[ChatMessage]:
        """The messages the model sees (see the module docstring, step 1)."""
        earlier: list[rs.MessageItem | rs.FunctionCallItem | rs.FunctionCallOutputItem] = []
        if self.body.previous_response_id:
            chain = await self.responses.history(
                owner_id=self.owner_id, response_id=self.body.previous_response_id
            )
            for saved in chain:
                earlier += rs.parse_items(saved.input_items)
                earlier += rs.parse_items(saved.output_items)
        system = [ChatMessage("system", self.body.instructions)] if self.body.instructions else []
        return system + rs.chat_messages(earlier + self.items)

    def allowed_calls(self, calls: Sequence[ToolCall]) -> list[ToolCall]:
        """The calls the request allows: one without ``parallel_tool_calls``, at most
        ``max_tool_calls``."""
        limit = 1 if self.body.parallel_tool_calls is False else len(calls)
        if self.body.max_tool_calls is not None:
            limit = min(limit, self.body.max_tool_calls)
        return list(calls[:limit])

    async def save(self, response: rs.ResponseObject) -> None:
        """Keep the finished response for its owner, when the request says ``store``."""
        if self.body.store is False:
            return
        await self.responses.save(
            owner_id=self.owner_id,
            response_id=response.id,
            model=response.model,
            input_items=[item.stored() for item in self.items],
            body=response.model_dump(mode="json"),
            previous_response_id=self.body.previous_response_id,
        )


def _finished(response: rs.ResponseObject, finish_reason: str, usage: rs.ResponseUsage) -> None:
    response.status = "incomplete" if finish_reason == "length" else "completed"
    if finish_reason == "length":
        response.incomplete_details = rs.IncompleteDetails(reason="max_output_tokens")
    response.usage = usage
    response.completed_at = int(time.time())


def _usage(generation: Generation, output: RequestOutput) -> rs.ResponseUsage:
    prompt = output.num_prompt_tokens or generation.num_prompt_tokens
    return rs.ResponseUsage.of(prompt, output.num_output_tokens, output.num_cached_tokens)


async def create_response(
    body: rs.CreateResponseRequest,
    *,
    completions: CompletionService,
    responses: ResponseService,
    owner_id: int,
    caller: str,
    request: Request,
) -> Response:
    """Serve ``POST /v1/responses``, streamed or not."""
    turn = Turn(body, owner_id, responses, body.items())
    messages = await turn.conversation()
    if not messages:
        raise InvalidRequestError("input must not be empty", param="input")
    generation = await completions.chat(
        model=body.model,
        messages=messages,
        params=body.sampling_params(),
        user=caller,
        tools=body.tool_specs(),
        tool_choice=body.tool_choice_name(),
    )
    response = rs.ResponseObject.start(
        body,
        response_id=f"resp_{generation.request_id}",
        created_at=generation.created,
        model=generation.model_id,
    )
    if body.stream:
        events = _Events(turn, generation, response)
        return EventStreamResponse(events.framed())
    result = await cancel_on_disconnect(request, collect(generation))
    parsed = parse_tool_calls(result.text, generation.tools)
    calls = turn.allowed_calls(parsed.calls)
    status: rs.ItemStatus = "incomplete" if result.finish_reason == "length" else "completed"
    if parsed.content or not calls:
        response.output.append(
            rs.OutputMessage(
                id=rs.new_item_id("msg"),
                status=status,
                content=[rs.OutputText(text=parsed.content)],
            )
        )
    response.output += [rs.FunctionCallOutput.of(call) for call in calls]
    usage = result.usage
    cached = usage.prompt_tokens_details.cached_tokens
    _finished(
        response,
        result.finish_reason,
        rs.ResponseUsage.of(usage.prompt_tokens, usage.completion_tokens, cached),
    )
    await turn.save(response)
    return JSONResponse(response.model_dump(mode="json"))


def sse_frame(event: dict[str, Any]) -> str:
    """One named event: ``event: <type>`` then its JSON (one line: JSON has no raw
    newline)."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event['type']}\ndata: {data}\n\n"


class _Events:
    """The event sequence of one streamed response, numbered as it is sent."""

    def __init__(self, turn: Turn, generation: Generation, response: rs.ResponseObject) -> None:
        self.turn = turn
        self.generation = generation
        self.response = response
        self._sequence = 0
        self._message: rs.OutputMessage | None = None

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        number, self._sequence = self._sequence, self._sequence + 1
        return {"type": kind, "sequence_number": number, **fields}

    def _snapshot(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json")

    async def framed(self) -> AsyncIterator[str]:
        """The events as SSE. Headers are gone by the time the generation fails, so a
        failure becomes one last ``error`` event (OpenAI's shape for it)."""
        events = self.events()
        try:
            async for event in events:
                yield sse_frame(event)
        except OllmError as exc:
            log.warning("stream ended with %s: %s", type(exc).__name__, exc.message)
            yield sse_frame(self.event("error", code=exc.code, message=exc.message, param=None))
        except Exception:
            log.exception("response stream failed")
            message = "The server had an error while streaming."
            yield sse_frame(self.event("error", code="server_error", message=message, param=None))
        finally:
            with anyio.CancelScope(shield=True):
                await events.aclose()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """``response.created`` … ``response.completed`` (or ``response.incomplete``)."""
        yield self.event("response.created", response=self._snapshot())
        yield self.event("response.in_progress", response=self._snapshot())
        tools = self.generation.tools
        calls_in = ToolCallStream(tools) if tools else None
        last: RequestOutput | None = None
        async with aclosing(outputs(self.generation.stream)) as deltas:
            async for output in deltas:
                if output.finish_reason in ("error", "abort"):
                    raise generation_failure(output)
                text = calls_in.feed(output.text) if calls_in else output.text
                if text:
                    for event in self._text(text):
                        yield event
                if output.finished:
                    last = output
        if last is None or last.finish_reason not in ("stop", "length"):
            raise EngineError("the generation ended without a finish reason")
        calls: list[ToolCall] = []
        if calls_in is not None:
            parsed = calls_in.finish()
            calls = self.turn.allowed_calls(parsed.calls)
            if parsed.content:
                for event in self._text(parsed.content):
                    yield event
        status: rs.ItemStatus = "incomplete" if last.finish_reason == "length" else "completed"
        if self._message is None and not calls:
            for event in self._open_message():  # an empty reply is still a message
                yield event
        if self._message is not None:
            for event in self._close_message(status):
                yield event
        for call in calls:
            for event in self._call(call):
                yield event
        _finished(self.response, last.finish_reason, _usage(self.generation, last))
        await self.turn.save(self.response)
        done = "response.incomplete" if self.response.status == "incomplete" else None
        yield self.event(done or "response.completed", response=self._snapshot())

    def _open_message(self) -> list[dict[str, Any]]:
        message = rs.OutputMessage(id=rs.new_item_id("msg"), status="in_progress", content=[])
        self._message = message
        index = len(self.response.output)
        self.response.output.append(message)
        part = rs.OutputText(text="")
        message.content.append(part)
        return [
            self.event(
                "response.output_item.added",
                output_index=index,
                item={**message.model_dump(mode="json"), "content": []},
            ),
            self.event(
                "response.content_part.added",
                item_id=message.id,
                output_index=index,
                content_index=0,
                part=part.model_dump(mode="json"),
            ),
        ]

    def _text(self, text: str) -> list[dict[str, Any]]:
        events = self._open_message() if self._message is None else []
        assert self._message is not None
        self._message.content[0].text += text
        events.append(
            self.event(
                "response.output_text.delta",
                item_id=self._message.id,
                output_index=self.response.output.index(self._message),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _close_message(self, status: rs.ItemStatus) -> list[dict[str, Any]]:
        message = self._message
        assert message is not None
        message.status = status
        index = self.response.output.index(message)
        part = message.content[0]
        where = {"item_id": message.id, "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **where, text=part.text, logprobs=[]),
            self.event("response.content_part.done", **where, part=part.model_dump(mode="json")),
            self.event(
                "response.output_item.done",
                output_index=index,
                item=message.model_dump(mode="json"),
            ),
        ]

    def _call(self, call: ToolCall) -> list[dict[str, Any]]:
        item = rs.FunctionCallOutput.of(call)
        index = len(self.response.output)
        self.response.output.append(item)
        opening = item.model_copy(update={"status": "in_progress", "arguments": ""})
        where = {"item_id": item.id, "output_index": index}
        return [
            self.event(
                "response.output_item.added",
                output_index=index,
                item=opening.model_dump(mode="json"),
            ),
            self.event("response.function_call_arguments.delta", **where, delta=item.arguments),
            self.event("response.function_call_arguments.done", **where, arguments=item.arguments),
            self.event(
                "response.output_item.done", output_index=index, item=item.model_dump(mode="json")
            ),
        ]
