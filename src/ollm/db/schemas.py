"""Pydantic schema families, one per table: ``Create`` (input), ``Update`` (partial
input: only the fields sent are changed) and ``Public`` (what a response may show).

Responses are built from ``Public`` schemas (``model_validate(row)``), never from ORM rows,
so a column added later (a hash, a flag) cannot leak by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
)

from ollm.db.models import MessageRole, MessageStatus, Role
from ollm.db.usernames import mixed_scripts, normalize_username
from ollm.errors import InvalidModelNameError
from ollm.model_names import parse_model_name
from ollm.sampling import MAX_COUNT, MAX_REPEAT_PENALTY, MAX_SEED, MAX_TEMPERATURE, MIN_SEED


def _username(value: str) -> str:
    if scripts := mixed_scripts(value):
        raise ValueError(
            f"a username may not mix {' and '.join(scripts)} letters (look-alike names)"
        )
    return normalize_username(value)


Username = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[\w.@-]+$"),
    AfterValidator(_username),
]
# Passwords people pick first, which a guesser tries first (compared case-insensitively).
_COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password12", "password123", "passw0rd", "p@ssw0rd",
        "12345678", "123456789", "1234567890", "87654321", "11111111", "00000000",
        "qwertyui", "qwerty123", "qwertyuiop", "1q2w3e4r", "abc12345", "abcd1234",
        "iloveyou", "sunshine1", "princess1", "football1", "baseball1", "welcome1",
        "letmein1", "admin123", "administrator", "changeme", "trustno1", "monkey123",
    }
)  # fmt: skip


def _strong_enough(value: str) -> str:
    # Beyond 8 characters of anything: two kinds of character (lower, upper, digits,
    # others, spaces included), or a passphrase of 16+; and not a famous first guess.
    kinds = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    if len(set(value)) < 4:
        raise ValueError("the password repeats too few characters; choose a longer, varied one")
    if kinds < 2 and len(value) < 16:
        raise ValueError(
            "the password needs two kinds of character (letters and digits, say, or a space) "
            "or 16 characters or more"
        )
    if value.casefold() in _COMMON_PASSWORDS:
        raise ValueError("that password is one of the first a guesser tries; choose another")
    return value


# A floor against trivial passwords; the ceiling keeps hashing cheap to refuse.
Password = Annotated[
    str, StringConstraints(min_length=8, max_length=1024), AfterValidator(_strong_enough)
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


def _model_name(value: str) -> str:
    # The grammar every model name obeys (no '..', no path tricks, ASCII): a chat naming
    # '../../etc/passwd' is refused when saved, not when someone later tries to use it.
    try:
        parse_model_name(value)
    except InvalidModelNameError as exc:
        raise ValueError(exc.message) from None
    return value


ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_model_name)
]
# Token counts are INTEGER columns (32-bit in PostgreSQL, and SQLite refuses Python ints
# past 64 bits): a bigger number is a 400, never a driver error.
TokenCount = Annotated[int, Field(ge=0, le=2**31 - 1)]
# Timings are finite and bounded (a day; ten million tokens a second): a stored value must
# always be exportable as JSON again.
Milliseconds = Annotated[float, Field(ge=0, le=86_400_000)]
TokenRate = Annotated[float, Field(ge=0, le=1e7)]


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
    # A reset password or a disabled account often means a leaked credential: the same
    # change can revoke every API key of the account (keys otherwise survive it).
    revoke_keys: bool = False


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

    # The engine's bounds (ollm.sampling), so stored settings always make a valid request.
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=MAX_COUNT)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0, le=MAX_REPEAT_PENALTY)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = Field(None, ge=MIN_SEED, le=MAX_SEED)
    max_tokens: int | None = Field(None, ge=1, le=MAX_COUNT)
    stop: list[Annotated[str, StringConstraints(max_length=1000)]] | None = Field(
        None, max_length=16
    )


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
    model: ModelName | None = None
    status: MessageStatus = MessageStatus.COMPLETE
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    ttft_ms: Milliseconds | None = None
    tokens_per_second: TokenRate | None = None


class MessageUpdate(_Input):
    """Finishing a streamed reply: its text, status, counts and timings."""

    content: str | None = None
    status: MessageStatus | None = None
    model: ModelName | None = None
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    ttft_ms: Milliseconds | None = None
    tokens_per_second: TokenRate | None = None


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
