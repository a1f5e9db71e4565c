"""Chats, always scoped to their owner.

Every read and write takes ``owner_id`` and treats someone else's chat exactly like a
missing one (None / False), so the API answers 404 and never reveals that it exists.
Keyword-only; the caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ollm.db import fts
from ollm.db.models import Chat, utcnow
from ollm.db.schemas import ChatCreate, ChatUpdate

MAX_PAGE = 500
# Changing these reorders a chat in the list ("recently active"); pinning or archiving
# only files it elsewhere.
_ACTIVITY_FIELDS = frozenset({"title", "model", "system_prompt", "params"})


async def create_chat(*, session: AsyncSession, owner_id: int, chat_in: ChatCreate) -> Chat:
    """A new, empty chat owned by ``owner_id``."""
    chat = Chat(
        owner_id=owner_id,
        title=chat_in.title,
        model=chat_in.model,
        system_prompt=chat_in.system_prompt,
        params=chat_in.params.model_dump(exclude_none=True),
    )
    session.add(chat)
    await session.flush()
    return chat


async def get_chat(*, session: AsyncSession, owner_id: int, chat_id: str) -> Chat | None:
    """The chat if ``owner_id`` owns it, else None."""
    return await session.scalar(select(Chat).where(Chat.id == chat_id, Chat.owner_id == owner_id))


def _filtered(
    statement: Select, *, session: AsyncSession, owner_id: int, archived: bool | None, q: str | None
) -> Select:
    statement = statement.where(Chat.owner_id == owner_id)
    if archived is not None:
        statement = statement.where(Chat.archived == archived)
    if q is not None and q.strip():
        statement = statement.where(fts.chat_matches(session.bind.dialect.name, q))
    return statement


async def list_chats(
    *,
    session: AsyncSession,
    owner_id: int,
    archived: bool | None = False,
    q: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> list[Chat]:
    """One page (at most ``MAX_PAGE``) of the owner's chats: pinned first, then most
    recently active.

    ``archived``: False (default) hides archived chats, True lists only them, None both.
    ``q`` searches titles and message text (see :mod:`ollm.db.fts`).
    """
    statement = _filtered(
        select(Chat), session=session, owner_id=owner_id, archived=archived, q=q
    ).order_by(Chat.pinned.desc(), Chat.updated_at.desc(), Chat.id.desc())
    statement = statement.offset(max(0, offset)).limit(max(0, min(limit, MAX_PAGE)))
    return list(await session.scalars(statement))


async def count_chats(
    *, session: AsyncSession, owner_id: int, archived: bool | None = False, q: str | None = None
) -> int:
    """How many chats :func:`list_chats` would page through."""
    statement = _filtered(
        select(func.count()).select_from(Chat),
        session=session,
        owner_id=owner_id,
        archived=archived,
        q=q,
    )
    return await session.scalar(statement) or 0


async def update_chat(
    *, session: AsyncSession, owner_id: int, chat_id: str, chat_in: ChatUpdate
) -> Chat | None:
    """Apply the fields that were sent; None if the chat is not the owner's."""
    chat = await get_chat(session=session, owner_id=owner_id, chat_id=chat_id)
    if chat is None:
        return None
    changes = chat_in.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if field == "params":
            value = chat_in.params.model_dump(exclude_none=True) if chat_in.params else {}
        setattr(chat, field, value)
    if _ACTIVITY_FIELDS & changes.keys():
        chat.updated_at = utcnow()
    await session.flush()
    return chat


async def delete_chat(*, session: AsyncSession, owner_id: int, chat_id: str) -> bool:
    """Delete the chat and (by cascade) its messages. True if it was the owner's."""
    result = await session.execute(
        delete(Chat).where(Chat.id == chat_id, Chat.owner_id == owner_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
