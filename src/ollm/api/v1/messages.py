"""``/api/v1/chats/{chat_id}/…``: continue a chat. Replies stream as server-sent events
(``start``, ``queue``, ``delta``…, ``done``, then ``[DONE]``) unless ``stream`` is false;
both turns are saved either way, and a reply whose client leaves is saved as interrupted.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from ollm.api.http.auth import CurrentUser
from ollm.api.http.deps import CallerDep, ChatsDep
from ollm.api.http.streaming import EventStreamResponse, cancel_on_disconnect, sse_stream
from ollm.api.v1 import schemas as s
from ollm.errors import EngineError
from ollm.services.chats.replies import DoneEvent, RunningReply

router = APIRouter(prefix="/chats/{chat_id}", tags=["messages"])

_SSE = {
    200: {
        "content": {"text/event-stream": {}},
        "model": s.ReplyResult,
        "description": "Server-sent events, or JSON when stream is false",
    }
}


async def _collect(reply: RunningReply) -> s.ReplyResult:
    done: DoneEvent | None = None
    async with aclosing(reply.events()) as stream:  # cancelled: closed (and so stopped) now
        async for event in stream:
            if isinstance(event, DoneEvent):
                done = event
    if done is None:
        raise EngineError("the reply ended without a result")
    return s.ReplyResult.of(reply.start_event, done)


async def _respond(reply: RunningReply, stream: bool, request: Request) -> Response:
    if stream:
        response = EventStreamResponse(sse_stream(reply.events()))
        # A client gone before the first event leaves the event generator unstarted, so it
        # never stops the reply itself; this runs however the response ends (a no-op when
        # the reply is over).
        response.background = BackgroundTask(reply.stop, "disconnected")
        return response
    result = await cancel_on_disconnect(request, _collect(reply))
    return JSONResponse(result.model_dump(mode="json"))


@router.post("/messages", response_model=None, responses=_SSE)
async def send_message(
    chat_id: str,
    body: s.SendMessage,
    request: Request,
    user: CurrentUser,
    chats: ChatsDep,
    caller: CallerDep,
) -> Response:
    """Add a user turn to the active branch and answer it with the chat's model."""
    reply = await chats.send(owner_id=user.id, chat_id=chat_id, content=body.content, caller=caller)
    return await _respond(reply, body.stream, request)


@router.post("/regenerate", response_model=None, responses=_SSE)
async def regenerate(
    chat_id: str,
    request: Request,
    user: CurrentUser,
    chats: ChatsDep,
    caller: CallerDep,
    body: Annotated[s.Regenerate | None, Body()] = None,
) -> Response:
    """Answer again: a new version of a reply, beside the old one."""
    body = body or s.Regenerate()
    reply = await chats.regenerate(
        owner_id=user.id, chat_id=chat_id, message_id=body.message_id, caller=caller
    )
    return await _respond(reply, body.stream, request)


@router.post("/edit", response_model=None, responses=_SSE)
async def edit_message(
    chat_id: str,
    body: s.EditMessage,
    request: Request,
    user: CurrentUser,
    chats: ChatsDep,
    caller: CallerDep,
) -> Response:
    """Ask differently: a new version of a user turn, beside the old one, and its reply."""
    reply = await chats.edit(
        owner_id=user.id,
        chat_id=chat_id,
        message_id=body.message_id,
        content=body.content,
        caller=caller,
    )
    return await _respond(reply, body.stream, request)


@router.post("/stop")
async def stop(chat_id: str, user: CurrentUser, chats: ChatsDep) -> s.StopResult:
    """Stop the reply being generated; what it wrote so far is kept, marked interrupted."""
    done = await chats.stop(owner_id=user.id, chat_id=chat_id)
    return s.StopResult(stopped=done is not None, message=done.message if done else None)
