"""Route dependencies, declared once as ``Annotated`` aliases.

Services live on ``app.state`` (built by the lifespan in :mod:`ollm.api.app`); routes ask
for them by type, e.g. ``completions: CompletionsDep``.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request

from ollm.services.completions import CompletionService
from ollm.services.models import ModelService
from ollm.settings import Settings

_BEARER = "bearer "


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_models(request: Request) -> ModelService:
    """The model registry and loaded engines."""
    return request.app.state.models


def get_completions(request: Request) -> CompletionService:
    """The service that turns prompts and chats into generations."""
    return request.app.state.completions


def caller_identity(request: Request) -> str:
    """Who is asking, as a fairness key for the scheduler (not authentication).

    A bearer token identifies a caller across addresses, so it wins; only a short hash
    of it is kept, never the token. Without one, the client address stands in.
    """
    header = request.headers.get("authorization", "")
    if header[: len(_BEARER)].lower() == _BEARER and header[len(_BEARER) :].strip():
        token = header[len(_BEARER) :].strip()
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    if request.client is not None:
        return f"addr:{request.client.host}"
    return "addr:unknown"


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelService, Depends(get_models)]
CompletionsDep = Annotated[CompletionService, Depends(get_completions)]
CallerDep = Annotated[str, Depends(caller_identity)]
