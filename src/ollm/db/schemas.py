"""Pydantic schema families, one per table: ``Create`` (input), ``Update`` (partial
input: only the fields sent are changed) and ``Public`` (what a response may show).

Responses are built from ``Public`` schemas (``model_validate(row)``), never from ORM rows,
so a column added later (a hash, a flag) cannot leak by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, computed_field

from ollm.db.models import MessageRole, MessageStatus, Role

Username = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w.@-]+$"),
]
# A floor against trivial passwords; the ceiling keeps hashing cheap to refuse.
Password = Annotated[str, StringConstraints(min_length=8, max_length=1024)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Token counts are INTEGER columns (32-bit in PostgreSQL, and SQLite refuses Python ints
# past 64 bits): a bigger number is a 400, never a driver error.
TokenCount = Annotated[int, Field(ge=0, le=2**31 - 1)]


class _Input(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- users ------------------------------------------------------------------------------


class UserCreate(_Input):
    """A new account."""

    username: Username
    password: Password
    role: Role = Role.USER


class UserUpdate(_Input):
    """Admin changes to an account (a new password is hashed by the CRUD layer)."""

    role: Role | None = None
    disabled: bool | None = None
    password: Password | None = None


class UserPublic(_Public):
    """An account as anyone allowed to see it sees it (never the hash)."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime


# -- API keys ---------------------------------------------------------------------------


class ApiKeyCreate(_Input):
    """A label for a new key, so its owner can tell keys apart."""

    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""


class ApiKeyPublic(_Public):
    """A key as listed: its prefix, never the secret."""

    id: int
    prefix: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    """The answer to creating a key: the only time ``key`` is ever shown."""

    key: str


# -- chats ------------------------------------------------------------------------------


class ChatParams(_Input):
    """Per-chat sampling defaults (each None means "the model's/server's default")."""

    temperature: float | None = Field(None, ge=0.0, le=5.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    max_tokens: int | None = Field(None, ge=1)
    stop: list[str] | None = Field(None, max_length=16)


class ChatCreate(_Input):
    """A new, empty chat."""

    title: Title = "New chat"
    model: ModelName | None = None
    system_prompt: str | None = None
    params: ChatParams = Field(default_factory=ChatParams)


class ChatUpdate(_Input):
    """Changes to a chat; fields left out stay as they are."""

    title: Title | None = None
    model: ModelName | None = None
    system_prompt: str | None = None
    params: ChatParams | None = None
    pinned: bool | None = None
    archived: bool | None = None


class ChatPublic(_Public):
    """A chat's settings and bookkeeping, without its messages."""

    id: str
    title: str
    model: str | None
    system_prompt: str | None
    params: ChatParams
    pinned: bool
    archived: bool
    active_leaf_id: int | None
    created_at: datetime
    updated_at: datetime


class ChatPage(BaseModel):
    """One page of a chat list, newest first."""

    items: list[ChatPublic]
    total: int
    offset: int
    limit: int


# -- messages ---------------------------------------------------------------------------


class MessageCreate(_Input):
    """A new turn under ``parent_id`` (None: a first turn). A sibling is a new branch."""

    role: MessageRole
    content: str = ""
    parent_id: int | None = None
    model: str | None = None
    status: MessageStatus = MessageStatus.COMPLETE
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    ttft_ms: float | None = Field(None, ge=0)
    tokens_per_second: float | None = Field(None, ge=0)


class MessageUpdate(_Input):
    """Finishing a streamed reply: its text, status, counts and timings."""

    content: str | None = None
    status: MessageStatus | None = None
    model: str | None = None
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    ttft_ms: float | None = Field(None, ge=0)
    tokens_per_second: float | None = Field(None, ge=0)


class MessagePublic(_Public):
    """One turn as shown to its owner."""

    id: int
    chat_id: str
    parent_id: int | None
    role: MessageRole
    content: str
    model: str | None
    status: MessageStatus
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft_ms: float | None
    tokens_per_second: float | None
    created_at: datetime


class BranchMessage(MessagePublic):
    """A message on the active branch, with where it sits among its siblings."""

    sibling_ids: list[int]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def sibling_index(self) -> int:
        """0-based position among the siblings (shown as "index+1 / count")."""
        return self.sibling_ids.index(self.id)
