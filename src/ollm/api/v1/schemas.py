"""Request and response bodies of ``/api/v1`` that are not already a service's schema.

Responses reuse the ``Public`` schemas of :mod:`ollm.db.schemas` and the service models
(``ChatDetail``, ``ChatExport``, the reply events), so a field means the same everywhere.
Requests forbid unknown fields: a misspelt field is a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ollm.db.schemas import MessagePublic, Password, Username, UserPublic
from ollm.services.chats.replies import DoneEvent, FinishReason, StartEvent, Timings, Usage

MessageText = Annotated[str, StringConstraints(min_length=1, max_length=1_000_000)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- auth -------------------------------------------------------------------------------


class SignupRequest(_Input):
    """A new account: a username of letters, digits and ``._@-``, a password of 8+."""

    username: Username
    password: Password


class LoginRequest(_Input):
    """Credentials. No format rules here: a wrong guess is a 401, not a hint."""

    username: Annotated[str, StringConstraints(max_length=256)]
    password: Annotated[str, StringConstraints(max_length=1024)]


class LoginResponse(BaseModel):
    """The logged-in account. ``csrf_token`` is also in the ``csrf_token`` cookie: send it
    back in ``X-CSRF-Token`` on POST/PUT/PATCH/DELETE."""

    user: UserPublic
    csrf_token: str


class AuthConfig(BaseModel):
    """What a client needs before logging in."""

    auth: bool = Field(description="Whether requests need a session or an API key.")
    signup: bool = Field(description="Whether POST /api/v1/auth/signup may be used now.")


class Me(BaseModel):
    """The caller: the account and how it was recognised (``local`` when auth is off)."""

    user: UserPublic
    auth: bool
    via: Literal["local", "session", "key"]


# -- chats and messages -----------------------------------------------------------------


class SendMessage(_Input):
    """A new user turn at the end of the active branch."""

    content: MessageText
    stream: bool = Field(True, description="Server-sent events; false answers with one JSON.")


class Regenerate(_Input):
    """Answer again. ``message_id``: the reply to redo (default: the active leaf)."""

    message_id: int | None = None
    stream: bool = True


class EditMessage(_Input):
    """Ask differently: ``content`` becomes a new version of user turn ``message_id``."""

    message_id: int
    content: MessageText
    stream: bool = True


class SelectBranch(_Input):
    """Show the branch through ``message_id`` (its newest leaf becomes the active one)."""

    message_id: int


class ReplyResult(BaseModel):
    """A reply, when not streamed: what the ``start`` and ``done`` events would say."""

    user_message: MessagePublic | None
    message: MessagePublic
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    dropped_turns: int
    error: dict[str, object] | None = None

    @classmethod
    def of(cls, start: StartEvent, done: DoneEvent) -> ReplyResult:
        return cls(user_message=start.user_message, **done.model_dump(exclude={"type"}))


class StopResult(BaseModel):
    """``stopped`` is false when no reply was running; ``message`` is the saved reply."""

    stopped: bool
    message: MessagePublic | None = None
