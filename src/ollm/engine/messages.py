"""Messages into the engine thread's inbox: add a request, abort one, forget a
conversation's cache, shut down."""

from __future__ import annotations

from dataclasses import dataclass

from ollm.engine.request import Request


@dataclass(frozen=True, slots=True)
class AddRequest:
    """Queue ``request``. ``followers`` (same prompt: the other choices of an ``n`` > 1
    request) are queued once its prompt is computed, so they copy its KV instead of
    computing the prompt again."""

    request: Request
    followers: tuple[Request, ...] = ()


@dataclass(frozen=True, slots=True)
class AbortRequest:
    request_id: str


@dataclass(frozen=True, slots=True)
class ForgetConversation:
    """A conversation was deleted: drop its cached KV, in memory and on disk."""

    tag: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


EngineMessage = AddRequest | AbortRequest | ForgetConversation | Shutdown
