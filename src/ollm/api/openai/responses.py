"""The OpenAI Responses API under ``/v1/responses``. Thin: parse, call, return.

Stored responses belong to the account that made them (with auth off, the local user):
another owner's id is a 404, exactly like an id that never existed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from ollm.api.http.auth import CurrentUser
from ollm.api.http.deps import CallerDep, CompletionsDep
from ollm.api.openai import responses_schemas as rs
from ollm.api.openai import responses_serving as serving
from ollm.errors import InvalidRequestError
from ollm.services.responses.service import ResponseService

router = APIRouter(prefix="/v1/responses", tags=["openai"])


def get_responses(request: Request) -> ResponseService:
    """The store of Responses API responses."""
    return request.app.state.responses


ResponsesDep = Annotated[ResponseService, Depends(get_responses)]


@router.post(
    "",
    response_model=None,
    responses={200: {"model": rs.ResponseObject, "description": "JSON, or SSE when streamed"}},
)
async def create_response(
    body: rs.CreateResponseRequest,
    request: Request,
    completions: CompletionsDep,
    responses: ResponsesDep,
    user: CurrentUser,
    caller: CallerDep,
) -> Response:
    """Create a model response; ``stream: true`` answers with server-sent events."""
    return await serving.create_response(
        body,
        completions=completions,
        responses=responses,
        owner_id=user.id,
        caller=caller,
        request=request,
    )


@router.get("/{response_id}")
async def retrieve_response(
    response_id: str,
    responses: ResponsesDep,
    user: CurrentUser,
    stream: bool = False,
) -> dict[str, Any]:
    """A stored response, as it was returned (``include[]`` and the other replay
    parameters change nothing here)."""
    if stream:
        # Replaying a stream is for background responses, which this server has none of.
        raise InvalidRequestError(
            "stream is not supported by this server when retrieving a response", param="stream"
        )
    saved = await responses.get(owner_id=user.id, response_id=response_id)
    return saved.body


@router.delete("/{response_id}")
async def delete_response(
    response_id: str, responses: ResponsesDep, user: CurrentUser
) -> rs.DeletedResponse:
    """Delete a stored response; the ones that continued it stay."""
    await responses.delete(owner_id=user.id, response_id=response_id)
    return rs.DeletedResponse(id=response_id)


@router.get("/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    responses: ResponsesDep,
    user: CurrentUser,
    query: Annotated[rs.InputItemsQuery, Query()],
) -> dict[str, Any]:
    """The items the request for a stored response brought, a page at a time."""
    saved = await responses.get(owner_id=user.id, response_id=response_id)
    items = saved.input_items if query.order == "asc" else saved.input_items[::-1]
    if query.after is not None:
        ids = [item.get("id") for item in items]
        if query.after not in ids:
            raise InvalidRequestError(f"no input item with id {query.after!r}", param="after")
        items = items[ids.index(query.after) + 1 :]
    page = items[: query.limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > len(page),
    }
