"""The message tree of a chat, always reached through its owner.

A message's ``parent_id`` is the turn it answers or follows; several children of one
parent are branches (an edited question, a regenerated reply). The chat's
``active_leaf_id`` names the branch being shown: the path from the root to that leaf.
Keyword-only; the caller owns the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ollm.db.crud.chats import get_chat
from ollm.db.models import Chat, Message, MessageStatus, utcnow, valid_id
from ollm.db.schemas import BranchMessage, MessageCreate, MessagePublic, MessageUpdate


def _owned(owner_id: int, chat_id: str) -> Select[tuple[Message]]:
    """Messages of ``chat_id``, provided ``owner_id`` owns that chat."""
    return (
        select(Message)
        .join(Chat, Chat.id == Message.chat_id)
        .where(Message.chat_id == chat_id, Chat.owner_id == owner_id)
    )


async def add_message(
    *, session: AsyncSession, owner_id: int, chat_id: str, message_in: MessageCreate
) -> Message | None:
    """Add a turn under ``message_in.parent_id`` and make it the active leaf.

    None if the chat is not the owner's, or the parent is not a message of this chat.
    """
    chat = await get_chat(session=session, owner_id=owner_id, chat_id=chat_id)
    if chat is None:
        return None
    if message_in.parent_id is not None:
        if not valid_id(message_in.parent_id):
            return None
        parent = await session.scalar(
            select(Message.id).where(Message.id == message_in.parent_id, Message.chat_id == chat_id)
        )
        if parent is None:
            return None
    message = Message(chat_id=chat_id, **message_in.model_dump())
    session.add(message)
    await session.flush()
    chat.active_leaf_id = message.id
    chat.updated_at = message.created_at
    await session.flush()
    return message


# Rows per executemany of a bulk write: bounded, so memory and each round trip stay small.
BULK_BATCH = 2000


async def _reserve_message_ids(session: AsyncSession, chat_id: str, count: int) -> list[int]:
    """``count`` unused message ids, increasing, that no concurrent writer will take."""
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence('messages', 'id')) "
                "FROM generate_series(1, :count)"
            ),
            {"count": count},
        )
        return sorted(int(row[0]) for row in rows)
    # SQLite has one writer at a time: touching the chat takes the write lock (if this
    # transaction has not already), and from then on no one else can insert a message.
    await session.execute(update(Chat).where(Chat.id == chat_id).values(updated_at=Chat.updated_at))
    top = await session.scalar(select(func.max(Message.id))) or 0
    return list(range(top + 1, top + 1 + count))


async def add_message_tree(
    *,
    session: AsyncSession,
    chat: Chat,
    messages: Sequence[tuple[MessageCreate, int | None, datetime | None]],
) -> list[int]:
    """Write a whole tree into ``chat`` fast, for imports: ``messages`` are
    ``(message, parent index, created_at)`` with each parent earlier in the list. Returns
    the new ids, in order.

    The ids are reserved first, so every parent link is known before anything is written,
    and the rows go in as a few executemany ``INSERT``s of :data:`BULK_BATCH` rows, instead
    of four round trips per message: a 20,000-message chat holds the write lock for well
    under a second, so other users' writes wait briefly instead of timing out.
    """
    if not messages:
        return []
    ids = await _reserve_message_ids(session, chat.id, len(messages))
    now = utcnow()
    rows = []
    for new_id, (message_in, parent, created_at) in zip(ids, messages, strict=True):
        row = message_in.model_dump(exclude={"parent_id"})
        row.update(
            id=new_id,
            chat_id=chat.id,
            parent_id=ids[parent] if parent is not None else None,
            created_at=created_at or now,
        )
        rows.append(row)
    table = Message.__table__
    for start in range(0, len(rows), BULK_BATCH):
        await session.execute(insert(table), rows[start : start + BULK_BATCH])
    return ids


async def get_message(
    *, session: AsyncSession, owner_id: int, chat_id: str, message_id: int
) -> Message | None:
    """One message of the owner's chat, or None."""
    if not valid_id(message_id):
        return None
    return await session.scalar(_owned(owner_id, chat_id).where(Message.id == message_id))


async def update_message(
    *,
    session: AsyncSession,
    owner_id: int,
    chat_id: str,
    message_id: int,
    message_in: MessageUpdate,
) -> Message | None:
    """Change the fields that were sent (finishing a streamed reply); None if not found."""
    message = await get_message(
        session=session, owner_id=owner_id, chat_id=chat_id, message_id=message_id
    )
    if message is None:
        return None
    for field, value in message_in.model_dump(exclude_unset=True).items():
        setattr(message, field, value)
    await session.execute(update(Chat).where(Chat.id == chat_id).values(updated_at=utcnow()))
    await session.flush()
    return message


async def get_children(
    *, session: AsyncSession, owner_id: int, chat_id: str, parent_id: int | None
) -> list[Message]:
    """The branches under ``parent_id`` (None: the chat's first turns), oldest first."""
    if parent_id is not None and not valid_id(parent_id):
        return []
    condition = Message.parent_id.is_(None) if parent_id is None else Message.parent_id == parent_id
    statement = _owned(owner_id, chat_id).where(condition).order_by(Message.id)
    return list(await session.scalars(statement))


async def get_path(
    *, session: AsyncSession, owner_id: int, chat_id: str, leaf_id: int | None = None
) -> list[Message]:
    """The turns from the root down to ``leaf_id`` (default: the active leaf), in order.

    One recursive query walks up the parent links. Empty if the chat has no messages,
    is not the owner's, or the leaf is not in it.
    """
    chat = await get_chat(session=session, owner_id=owner_id, chat_id=chat_id)
    if chat is None:
        return []
    leaf_id = chat.active_leaf_id if leaf_id is None else leaf_id
    if not valid_id(leaf_id):
        return []
    path = (
        select(Message.id, Message.parent_id, literal(0).label("depth"))
        .where(Message.id == leaf_id, Message.chat_id == chat_id)
        .cte("path", recursive=True)
    )
    parent = aliased(Message)
    path = path.union_all(
        select(parent.id, parent.parent_id, path.c.depth + 1).join(
            path, parent.id == path.c.parent_id
        )
    )
    statement = select(Message).join(path, Message.id == path.c.id).order_by(path.c.depth.desc())
    return list(await session.scalars(statement))


async def get_active_branch(
    *, session: AsyncSession, owner_id: int, chat_id: str
) -> list[BranchMessage]:
    """The active branch with, for each turn, the ids of its siblings (branch points:
    "2 / 3" is ``sibling_index + 1`` / ``len(sibling_ids)``)."""
    path = await get_path(session=session, owner_id=owner_id, chat_id=chat_id)
    if not path:
        return []
    parents = {m.parent_id for m in path if m.parent_id is not None}
    rows = await session.execute(
        select(Message.id, Message.parent_id)
        .where(
            Message.chat_id == chat_id,
            Message.parent_id.in_(parents) | Message.parent_id.is_(None),
        )
        .order_by(Message.id)
    )
    siblings: dict[int | None, list[int]] = defaultdict(list)
    for message_id, parent_id in rows:
        siblings[parent_id].append(message_id)
    return [
        BranchMessage(
            **MessagePublic.model_validate(m).model_dump(), sibling_ids=siblings[m.parent_id]
        )
        for m in path
    ]


async def select_branch(
    *, session: AsyncSession, owner_id: int, chat_id: str, message_id: int
) -> Chat | None:
    """Show the branch through ``message_id``: the active leaf becomes its newest
    descendant (a child always has a larger id than its parent, so the largest id in
    the subtree is a leaf). None if the chat or message is not the owner's."""
    chat = await get_chat(session=session, owner_id=owner_id, chat_id=chat_id)
    if chat is None:
        return None
    rows = await session.execute(
        select(Message.id, Message.parent_id).where(Message.chat_id == chat_id)
    )
    children: dict[int | None, list[int]] = defaultdict(list)
    for child_id, parent_id in rows:
        children[parent_id].append(child_id)
    if not any(message_id in ids for ids in children.values()):
        return None
    newest, stack = message_id, [message_id]
    while stack:
        node = stack.pop()
        newest = max(newest, node)
        stack.extend(children[node])
    chat.active_leaf_id = newest
    await session.flush()
    return chat


async def interrupt_streaming(*, session: AsyncSession) -> int:
    """At start-up: replies left ``streaming`` by a crash become ``interrupted``
    (their text so far is kept). Returns how many."""
    result = await session.execute(
        update(Message)
        .where(Message.status == MessageStatus.STREAMING)
        .values(status=MessageStatus.INTERRUPTED)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
