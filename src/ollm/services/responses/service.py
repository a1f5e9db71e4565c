"""ResponseService: responses kept on the server, per owner, for ``previous_response_id``.

The items are stored as the dialect hands them over (JSON objects in the Responses API's
item shapes); this service does not interpret them. It keeps them, finds them again for
their owner only (anyone else's id is "not found"), and follows ``previous_response_id``
links back to the start of a conversation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ollm.db.crud import responses as crud
from ollm.db.models import StoredResponse
from ollm.errors import NotFoundError


class ResponseNotFoundError(NotFoundError):
    """No stored response of that id belongs to the caller."""

    code = "response_not_found"


@dataclass(frozen=True, slots=True)
class SavedResponse:
    """One stored response: the request's input items and the response object."""

    id: str
    model: str
    previous_response_id: str | None
    input_items: list[dict[str, Any]]
    body: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: StoredResponse) -> SavedResponse:
        return cls(
            id=row.id,
            model=row.model,
            previous_response_id=row.previous_response_id,
            input_items=list(row.input_items),
            body=dict(row.body),
            created_at=row.created_at,
        )

    @property
    def output_items(self) -> list[dict[str, Any]]:
        """The items the model produced (the response object's ``output``)."""
        return list(self.body.get("output") or [])


def _not_found(response_id: str) -> ResponseNotFoundError:
    # OpenAI's wording, so clients that match on it keep working.
    return ResponseNotFoundError(
        f"Response with id '{response_id}' not found.", param="response_id"
    )


class ResponseService:
    """Stores, finds, chains and deletes an owner's responses."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    async def save(
        self,
        *,
        owner_id: int,
        response_id: str,
        model: str,
        input_items: list[dict[str, Any]],
        body: dict[str, Any],
        previous_response_id: str | None = None,
    ) -> None:
        """Keep a finished response for its owner."""
        async with self._transaction() as session:
            await crud.create_response(
                session=session,
                owner_id=owner_id,
                response_id=response_id,
                model=model,
                input_items=input_items,
                body=body,
                previous_response_id=previous_response_id,
            )

    async def get(self, *, owner_id: int, response_id: str) -> SavedResponse:
        """The owner's response (404 if there is none of that id)."""
        async with self._transaction() as session:
            row = await crud.get_response(
                session=session, owner_id=owner_id, response_id=response_id
            )
            if row is None:
                raise _not_found(response_id)
            return SavedResponse.of(row)

    async def history(self, *, owner_id: int, response_id: str) -> list[SavedResponse]:
        """The response and those it continues, oldest first (404 if it is not the
        owner's): the conversation a follow-up with ``previous_response_id`` extends."""
        async with self._transaction() as session:
            chain = await crud.response_chain(
                session=session, owner_id=owner_id, response_id=response_id
            )
            if chain is None:
                raise _not_found(response_id)
            return [SavedResponse.of(row) for row in chain]

    async def delete(self, *, owner_id: int, response_id: str) -> None:
        """Delete the owner's response (404 if there is none of that id)."""
        async with self._transaction() as session:
            deleted = await crud.delete_response(
                session=session, owner_id=owner_id, response_id=response_id
            )
        if not deleted:
            raise _not_found(response_id)
