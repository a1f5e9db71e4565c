"""Anthropic-compatible routes (``/v1/messages``). Thin: parse, call the serving layer, return."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ollm.api.anthropic import schemas as s
from ollm.api.anthropic import serving
from ollm.api.http.deps import CallerDep, CompletionsDep

router = APIRouter(prefix="/v1/messages", tags=["anthropic"])


@router.post(
    "",
    response_model=None,
    responses={200: {"model": s.Message, "description": "JSON, or SSE when streamed"}},
)
async def create_message(
    body: s.MessagesRequest,
    request: Request,
    completions: CompletionsDep,
    caller: CallerDep,
) -> Response:
    """Anthropic Messages; ``stream: true`` answers with Anthropic's server-sent events."""
    return await serving.create_message(body, completions, caller, request)


@router.post("/count_tokens")
async def count_tokens(body: s.CountTokensRequest, completions: CompletionsDep) -> s.TokenCount:
    """How many tokens the prompt of a Messages request takes (nothing is generated)."""
    return await serving.count_tokens(body, completions)
