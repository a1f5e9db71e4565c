"""Stored Responses API responses, always scoped to their owner.

As with chats, someone else's response is treated exactly like a missing one (None /
False), so the API answers 404 and never reveals that it exists. Keyword-only; the
caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ollm.db.models import StoredResponse

# How far back previous_response_id links are followed: far more turns than any context
# holds, and a bound on the queries one request can cause.
MAX_CHAIN = 1000


async def create_response(
    *,
    session: AsyncSession,
    owner_id: int,
    response_id: str,
    model: str,
    input_items: list[dict[str, Any]],
    body: dict[str, Any],
    previous_response_id: str | None = None,
) -> StoredResponse:
    """Store a response ``owner_id`` created."""
    row = StoredResponse(
        id=response_id,
        owner_id=owner_id,
        previous_response_id=previous_response_id,
        model=model,
        input_items=input_items,
        body=body,
    )
    session.add(row)
    await session.flush()
    return row


async def get_response(
    *, session: AsyncSession, owner_id: int, response_id: str
) -> StoredResponse | None:
    """The response if ``owner_id`` owns it, else None."""
    return await session.scalar(
        select(StoredResponse).where(
            StoredResponse.id == response_id, StoredResponse.owner_id == owner_id
        )
    )


async def delete_response(*, session: AsyncSession, owner_id: int, response_id: str) -> bool:
    """Delete the owner's response; False if there was none (or it is someone else's)."""
    result = await session.execute(
        delete(StoredResponse).where(
            StoredResponse.id == response_id, StoredResponse.owner_id == owner_id
        )
    )
    return bool(result.rowcount)


async def response_chain(
    *, session: AsyncSession, owner_id: int, response_id: str
) -> list[StoredResponse] | None:
    """``response_id`` and the responses it continues, oldest first; None if the owner
    has no response of that id.

    The chain ends at the first response without a predecessor, or at a predecessor that
    was deleted (or is not the owner's), or after :data:`MAX_CHAIN` links.
    """
    newest = await get_response(session=session, owner_id=owner_id, response_id=response_id)
    if newest is None:
        return None
    chain = [newest]
    while (previous := chain[-1].previous_response_id) is not None and len(chain) < MAX_CHAIN:
        row = await get_response(session=session, owner_id=owner_id, response_id=previous)
        if row is None:
            break
        chain.append(row)
    chain.reverse()
    return chain
