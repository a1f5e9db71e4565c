"""``/api/v1/chats``: the caller's chats. Someone else's chat id is a 404, like a missing
one, on every route."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import JSONResponse, PlainTextResponse

from ollm.api.http.auth import CurrentUser
from ollm.api.http.deps import ChatsDep
from ollm.api.v1 import schemas as s
from ollm.db.schemas import ChatCreate, ChatPage, ChatPublic, ChatUpdate
from ollm.services.chats.service import ChatDetail
from ollm.services.chats.transfer import ChatImport

router = APIRouter(prefix="/chats", tags=["chats"])

_ARCHIVED = {"false": False, "true": True, "all": None}


def _filename(title: str, extension: str) -> str:
    stem = re.sub(r"[^\w.-]+", "-", title, flags=re.ASCII).strip("-.")[:80] or "chat"
    return f"{stem}.{extension}"


@router.get("")
async def list_chats(
    user: CurrentUser,
    chats: ChatsDep,
    q: Annotated[str | None, Query(max_length=500, description="Search words")] = None,
    archived: Literal["false", "true", "all"] = "false",
    # Bounded: a huge offset overflowed SQLite's INTEGER (a 500 the fuzz suite found).
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ChatPage:
    """The caller's chats, pinned first then newest; ``q`` searches titles and messages."""
    return await chats.list_chats(
        owner_id=user.id, q=q, archived=_ARCHIVED[archived], offset=offset, limit=limit
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_chat(
    user: CurrentUser, chats: ChatsDep, body: Annotated[ChatCreate | None, Body()] = None
) -> ChatPublic:
    """A new, empty chat (title, model, system prompt and sampling params optional)."""
    return await chats.create_chat(owner_id=user.id, chat_in=body or ChatCreate())


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_chat(body: ChatImport, user: CurrentUser, chats: ChatsDep) -> ChatDetail:
    """A new chat from our export JSON, or from ``{"title", "model", "messages": [...]}``
    with OpenAI-style messages."""
    return await chats.import_chat(owner_id=user.id, data=body)


@router.get("/{chat_id}")
async def get_chat(chat_id: str, user: CurrentUser, chats: ChatsDep) -> ChatDetail:
    """The chat with its active branch; each message says which of its siblings it is."""
    return await chats.get_chat(owner_id=user.id, chat_id=chat_id)


@router.patch("/{chat_id}")
async def update_chat(
    chat_id: str, body: ChatUpdate, user: CurrentUser, chats: ChatsDep
) -> ChatPublic:
    """Rename, change model, system prompt or sampling params, pin, archive."""
    return await chats.update_chat(owner_id=user.id, chat_id=chat_id, chat_in=body)


@router.delete("/{chat_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_chat(chat_id: str, user: CurrentUser, chats: ChatsDep) -> Response:
    """Delete the chat and every message in it."""
    await chats.delete_chat(owner_id=user.id, chat_id=chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/{chat_id}/active-leaf")
async def select_branch(
    chat_id: str, body: s.SelectBranch, user: CurrentUser, chats: ChatsDep
) -> ChatDetail:
    """Show another branch: the one through ``message_id``."""
    return await chats.select_branch(owner_id=user.id, chat_id=chat_id, message_id=body.message_id)


@router.get(
    "/{chat_id}/export",
    response_model=None,
    responses={200: {"content": {"application/json": {}, "text/markdown": {}}}},
)
async def export_chat(
    chat_id: str,
    user: CurrentUser,
    chats: ChatsDep,
    format: Literal["json", "markdown"] = "json",
) -> Response:
    """Download the chat: ``json`` (every branch, importable) or ``markdown`` (the branch
    shown)."""
    if format == "markdown":
        chat, text = await chats.export_markdown(owner_id=user.id, chat_id=chat_id)
        disposition = f'attachment; filename="{_filename(chat.title, "md")}"'
        return PlainTextResponse(
            text,
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    export = await chats.export_chat(owner_id=user.id, chat_id=chat_id)
    disposition = f'attachment; filename="{_filename(export.chat.title, "json")}"'
    return JSONResponse(
        export.model_dump(mode="json"), headers={"Content-Disposition": disposition}
    )
