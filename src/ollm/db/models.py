"""The tables, as SQLAlchemy 2 typed ORM models.

Rows stay inside the service layer: responses are built from the pydantic schemas in
``schemas.py``. Messages form a tree (``parent_id``): editing a user turn or regenerating
a reply adds a sibling, and the chat remembers which leaf is active. The schema itself is
created by the Alembic migrations in ``migrations/``, never by ``create_all``.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them on every dialect.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# Integer keys are 32-bit on PostgreSQL; a larger id from a URL is simply not found
# (rather than a driver error).
MAX_ID = 2**31 - 1


def valid_id(value: int | None) -> bool:
    """True if ``value`` could be the id of a row (so it is worth asking the database)."""
    return value is not None and 0 < value <= MAX_ID


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column holds)."""
    return datetime.now(UTC)


def new_chat_id() -> str:
    """A random, unguessable chat id (uuid4 as text)."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back timezone-aware UTC on every dialect.

    SQLite has no timezone type and returns naive values; PostgreSQL's ``timestamptz``
    returns aware ones. Storing UTC and re-attaching it on the way out makes both agree.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: ollm stores timezone-aware UTC timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Role(enum.StrEnum):
    """What an account may do: admins manage users."""

    ADMIN = "admin"
    USER = "user"


class MessageRole(enum.StrEnum):
    """Who wrote a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


class MessageStatus(enum.StrEnum):
    """Whether a message is whole: a reply cut short is kept and marked, never dropped."""

    COMPLETE = "complete"
    STREAMING = "streaming"
    INTERRUPTED = "interrupted"
    ERROR = "error"


def _str_enum(enum_class: type[enum.StrEnum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint (no native PostgreSQL enum type,
    # which would need its own migrations to grow).
    return Enum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base with the naming convention and the shared column types."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class User(Base):
    """An account. Passwords are stored only as argon2 hashes."""

    __tablename__ = "users"
    __table_args__ = (
        # One account per name after NFKC, case folding and look-alike letters
        # (ollm.db.usernames); NULL only for rows a migration could not key.
        Index("ix_users_username_key", "username_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    username_key: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_str_enum(Role, "role"), default=Role.USER)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A bearer key: only its sha256 is stored; the prefix identifies it to people."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class LoginSession(Base):
    """A login session (not a database session): the cookie holds the token, the table
    only its sha256."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Chat(Base):
    """A conversation owned by one user; its messages form a tree."""

    __tablename__ = "chats"
    __table_args__ = (
        # The chat list: one owner's chats, archived or not, pinned first, newest first.
        Index("ix_chats_owner_list", "owner_id", "archived", "pinned", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_chat_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    model: Mapped[str | None] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    pinned: Mapped[bool] = mapped_column(default=False)
    archived: Mapped[bool] = mapped_column(default=False)
    # Circular with messages.chat_id: created after both tables (use_alter) and nulled
    # when the leaf is deleted.
    active_leaf_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(Base):
    """One turn. ``parent_id`` is None for the first turn; siblings are branches."""

    __tablename__ = "messages"
    __table_args__ = (
        # Children of a message (and the roots of a chat), in creation order.
        Index("ix_messages_chat_parent", "chat_id", "parent_id", "id"),
    )

    # An integer key: it orders siblings by creation and gives SQLite's FTS5 index a
    # stable rowid to follow (an implicit rowid may change on VACUUM).
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[str] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[MessageRole] = mapped_column(_str_enum(MessageRole, "message_role"))
    content: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[MessageStatus] = mapped_column(
        _str_enum(MessageStatus, "message_status"), default=MessageStatus.COMPLETE
    )
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    tokens_per_second: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def new_response_id() -> str:
    """A random, unguessable Responses API id, in OpenAI's ``resp_`` style."""
    return f"resp_{uuid.uuid4().hex}"


class StoredResponse(Base):
    """A response of the OpenAI Responses API, kept for ``GET`` and ``previous_response_id``.

    ``input_items`` are the items the request brought (not those of earlier responses it
    continued: ``previous_response_id`` links to them); ``body`` is the response object as
    it was returned, output items included.
    """

    __tablename__ = "responses"
    __table_args__ = (
        # One owner's responses, newest first; deleting an account finds them here.
        Index("ix_responses_owner_created", "owner_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_response_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Not a foreign key: deleting a response leaves the ones that continued it readable
    # (their history then starts after the gap).
    previous_response_id: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    input_items: Mapped[list[Any]] = mapped_column(JSON)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
