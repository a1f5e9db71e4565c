"""Route dependencies, declared once as ``Annotated`` aliases.

Services live on ``app.state`` (built by the lifespan in :mod:`ollm.api.app`); routes ask
for them by type, e.g. ``completions: CompletionsDep``.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, Request

from ollm.api.http.auth import CurrentPrincipal, presented_api_key
from ollm.services.accounts.service import AccountService
from ollm.services.chats.service import ChatService
from ollm.services.inference.completions import CompletionService
from ollm.services.inference.embeddings import EmbeddingService
from ollm.services.models.service import ModelService
from ollm.settings import Settings


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_models(request: Request) -> ModelService:
    """The model registry and loaded engines."""
    return request.app.state.models


def get_completions(request: Request) -> CompletionService:
    """The service that turns prompts and chats into generations."""
    return request.app.state.completions


def get_embeddings(request: Request) -> EmbeddingService:
    """The service that computes embedding vectors."""
    return request.app.state.embeddings


def get_accounts(request: Request) -> AccountService:
    """Accounts, sessions and API keys."""
    return request.app.state.accounts


def get_chats(request: Request) -> ChatService:
    """Chats, their messages, and the replies running in them."""
    return request.app.state.chats


def caller_identity(request: Request) -> str:
    """Who is asking, as a fairness key for the scheduler (not authentication).

    An API key (bearer or ``x-api-key``) identifies a caller across addresses, so it wins;
    only a short hash of it is kept, never the key. Without one, the client address stands
    in.
    """
    if (token := presented_api_key(request)) is not None:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    if request.client is not None:
        return f"addr:{request.client.host}"
    return "addr:unknown"


def fairness_key(request: Request, principal: CurrentPrincipal) -> str:
    """The scheduler's fairness key: the account when auth is on (so one person's keys
    and sessions share one place in line), else :func:`caller_identity`."""
    if principal.via != "local":
        return f"user:{principal.user.id}"
    return caller_identity(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelService, Depends(get_models)]
CompletionsDep = Annotated[CompletionService, Depends(get_completions)]
EmbeddingsDep = Annotated[EmbeddingService, Depends(get_embeddings)]
AccountsDep = Annotated[AccountService, Depends(get_accounts)]
ChatsDep = Annotated[ChatService, Depends(get_chats)]
CallerDep = Annotated[str, Depends(fairness_key)]
