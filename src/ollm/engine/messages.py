"""Messages into the engine thread's inbox: add a request, abort one, shut down."""

from __future__ import annotations

from dataclasses import dataclass

from ollm.engine.request import Request


@dataclass(frozen=True, slots=True)
class AddRequest:
    request: Request


@dataclass(frozen=True, slots=True)
class AbortRequest:
    request_id: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


EngineMessage = AddRequest | AbortRequest | Shutdown
