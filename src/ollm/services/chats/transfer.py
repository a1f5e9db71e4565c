"""Chats in and out: our JSON export (the whole message tree), Markdown (the active
branch, for people), and imports of either our export or an OpenAI-style message list.

The helpers here run inside a transaction the caller (``ChatService``) owns.
"""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ollm.db import crud
from ollm.db.models import Chat, Message, MessageRole, MessageStatus, utcnow
from ollm.db.schemas import (
    BranchMessage,
    ChatCreate,
    ChatParams,
    ChatPublic,
    MessageCreate,
    Milliseconds,
    ModelName,
    Title,
    TokenCount,
    TokenRate,
)
from ollm.errors import InvalidRequestError

EXPORT_FORMAT = "ollm.chat"
MAX_IMPORT_MESSAGES = 100_000


def _utc(value: datetime) -> datetime:
    # Stored as UTC: a time that cannot be expressed in UTC (year 1 at +01:00 is year 0)
    # is a 400 here, not an overflow in the database driver.
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise ValueError("the time is out of range once converted to UTC") from None


Timestamp = Annotated[datetime, AfterValidator(_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- our own format -------------------------------------------------------------------------


class ExportedMessage(_Strict):
    """One node of the message tree; ``id``/``parent_id`` are only meaningful in the file."""

    id: int
    parent_id: int | None = None
    role: MessageRole
    content: str = ""
    model: ModelName | None = None
    status: MessageStatus = MessageStatus.COMPLETE
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    ttft_ms: Milliseconds | None = None
    tokens_per_second: TokenRate | None = None
    created_at: Timestamp | None = None


class ExportedChat(_Strict):
    """A chat's settings in an export."""

    title: Title = "Imported chat"
    model: ModelName | None = None
    system_prompt: str | None = None
    params: ChatParams = Field(default_factory=ChatParams)
    pinned: bool = False
    archived: bool = False
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class ChatExport(_Strict):
    """``GET /api/v1/chats/{id}/export``: every branch, importable as it is."""

    format: Literal["ollm.chat"] = EXPORT_FORMAT
    version: Literal[1] = 1
    exported_at: datetime = Field(default_factory=utcnow)
    chat: ExportedChat
    active_leaf_id: int | None = None
    messages: list[ExportedMessage] = Field(default_factory=list, max_length=MAX_IMPORT_MESSAGES)


# -- OpenAI-style imports -------------------------------------------------------------------


class OpenAIMessage(BaseModel):
    """One message as OpenAI's API spells it. Other keys (``name``, ``refusal``…) are
    ignored: exports from other tools carry all sorts, and only the text matters here."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        texts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ValueError(f"content part {i} is not a text part")
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)


class OpenAIChatImport(_Strict):
    """``{"title", "model", "messages": [...]}``: a linear conversation. Leading system
    (or developer) messages become the chat's system prompt."""

    title: Title = "Imported chat"
    model: ModelName | None = None
    messages: list[OpenAIMessage] = Field(default_factory=list, max_length=MAX_IMPORT_MESSAGES)


def _import_kind(value: Any) -> str:
    # Our export always names its format; an OpenAI-style body never has that key.
    is_ours = isinstance(value, ChatExport) or (isinstance(value, dict) and "format" in value)
    return "ollm" if is_ours else "openai"


ChatImport = Annotated[
    Annotated[ChatExport, Tag("ollm")] | Annotated[OpenAIChatImport, Tag("openai")],
    Discriminator(_import_kind),
]


# -- export -----------------------------------------------------------------------------------


async def export_chat(session: AsyncSession, chat: Chat) -> ChatExport:
    """The chat and its whole tree (every branch), oldest message first."""
    # No CRUD function lists a whole tree: this read is the only one that needs it, and the
    # caller has already checked the chat is the requester's.
    rows = await session.scalars(
        select(Message).where(Message.chat_id == chat.id).order_by(Message.id)
    )
    public = ChatPublic.model_validate(chat)
    return ChatExport(
        chat=ExportedChat(**public.model_dump(include=set(ExportedChat.model_fields))),
        active_leaf_id=chat.active_leaf_id,
        # A reply still being written is exported as it stands (imported as interrupted).
        messages=[ExportedMessage.model_validate(row, from_attributes=True) for row in rows],
    )


def to_markdown(chat: ChatPublic, branch: list[BranchMessage]) -> str:
    """The active branch as a Markdown document for reading or sharing."""
    lines = [f"# {chat.title}", ""]
    if chat.model:
        lines += [f"*Model: {chat.model}*", ""]
    if chat.system_prompt:
        lines += ["## System", "", chat.system_prompt, ""]
    for message in branch:
        heading = message.role.value.capitalize()
        if message.role == MessageRole.ASSISTANT and message.model:
            heading += f" ({message.model})"
        lines += [f"## {heading}", "", message.content, ""]
        if message.status in (MessageStatus.INTERRUPTED, MessageStatus.ERROR):
            lines += [f"*[{message.status.value}]*", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- import -----------------------------------------------------------------------------------


def _tree_order(messages: list[ExportedMessage]) -> list[ExportedMessage]:
    """Parents before children; refuses duplicate ids, unknown parents and cycles."""
    by_id: dict[int, ExportedMessage] = {}
    for message in messages:
        if message.id in by_id:
            raise InvalidRequestError(f"message id {message.id} appears twice", param="messages")
        by_id[message.id] = message
    children: dict[int | None, list[ExportedMessage]] = defaultdict(list)
    for message in messages:
        if message.parent_id is not None and message.parent_id not in by_id:
            raise InvalidRequestError(
                f"message {message.id} has parent_id {message.parent_id}, which is not in the "
                "export",
                param="messages",
            )
        children[message.parent_id].append(message)
    ordered: list[ExportedMessage] = []
    queue = deque(children[None])
    while queue:
        message = queue.popleft()
        ordered.append(message)
        queue.extend(children[message.id])
    if len(ordered) != len(messages):
        raise InvalidRequestError("the messages' parent links form a cycle", param="messages")
    return ordered


async def import_export(session: AsyncSession, owner_id: int, data: ChatExport) -> Chat:
    """A new chat with the export's whole tree and active branch.

    The tree is ordered and checked before anything is written, then written in bulk
    (:func:`ollm.db.crud.add_message_tree`), so the write lock is held briefly.
    """
    info = data.chat
    ordered = _tree_order(data.messages)
    position = {message.id: index for index, message in enumerate(ordered)}
    nodes = []
    for message in ordered:
        fields = message.model_dump(exclude={"id", "parent_id", "created_at"})
        if message.status == MessageStatus.STREAMING:
            fields["status"] = MessageStatus.INTERRUPTED
        parent = position[message.parent_id] if message.parent_id is not None else None
        nodes.append((MessageCreate(**fields), parent, message.created_at))
    chat_in = ChatCreate(
        title=info.title, model=info.model, system_prompt=info.system_prompt, params=info.params
    )
    chat = await crud.create_chat(session=session, owner_id=owner_id, chat_in=chat_in)
    chat.pinned, chat.archived = info.pinned, info.archived
    ids = await crud.add_message_tree(session=session, chat=chat, messages=nodes)
    leaf = position.get(data.active_leaf_id) if data.active_leaf_id is not None else None
    if leaf is not None:
        chat.active_leaf_id = ids[leaf]
    elif ids:
        chat.active_leaf_id = ids[-1]
    chat.created_at = info.created_at or chat.created_at
    chat.updated_at = info.updated_at or chat.updated_at
    await session.flush()
    return chat


async def import_openai(session: AsyncSession, owner_id: int, data: OpenAIChatImport) -> Chat:
    """A new chat whose one branch is the message list, in order."""
    messages = list(data.messages)
    system: list[str] = []
    while messages and messages[0].role in ("system", "developer"):
        system.append(messages.pop(0).content or "")
    nodes = []
    for index, message in enumerate(messages):
        role = MessageRole.SYSTEM if message.role == "developer" else MessageRole(message.role)
        message_in = MessageCreate(role=role, content=message.content or "")
        nodes.append((message_in, index - 1 if index else None, None))
    chat_in = ChatCreate(
        title=data.title, model=data.model, system_prompt="\n\n".join(system) or None
    )
    chat = await crud.create_chat(session=session, owner_id=owner_id, chat_in=chat_in)
    ids = await crud.add_message_tree(session=session, chat=chat, messages=nodes)
    if ids:
        chat.active_leaf_id = ids[-1]
    await session.flush()
    return chat
