"""``/api/v1/keys``: the caller's API keys. The secret is shown once, on creation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from ollm.api.http.auth import CurrentUser
from ollm.api.http.deps import AccountsDep
from ollm.db.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(
    user: CurrentUser,
    accounts: AccountsDep,
    body: Annotated[ApiKeyCreate | None, Body()] = None,
) -> ApiKeyCreated:
    """A new key; ``key`` in the answer is the secret, never shown again."""
    return await accounts.create_key(user_id=user.id, key_in=body or ApiKeyCreate())


@router.get("")
async def list_keys(user: CurrentUser, accounts: AccountsDep) -> list[ApiKeyPublic]:
    """The caller's keys (prefixes only), revoked ones included."""
    return await accounts.list_keys(user_id=user.id)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: int, user: CurrentUser, accounts: AccountsDep) -> Response:
    """Revoke one of the caller's keys (404 if it is not theirs)."""
    await accounts.revoke_key(user_id=user.id, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
