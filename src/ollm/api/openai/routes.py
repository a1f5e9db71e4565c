"""OpenAI-compatible routes under ``/v1``. Thin: parse, call the serving layer, return."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ollm.api.http.deps import CallerDep, CompletionsDep, ModelsDep
from ollm.api.openai import schemas as s
from ollm.api.openai import serving
from ollm.services.models.service import ModelEntry

router = APIRouter(prefix="/v1", tags=["openai"])


def _card(entry: ModelEntry) -> s.ModelCard:
    return s.ModelCard(id=entry.model_id, created=entry.created)


@router.get("/models")
async def list_models(models: ModelsDep) -> s.ModelList:
    """Every model this server can serve (loaded on first use)."""
    return s.ModelList(data=[_card(entry) for entry in models.list_models()])


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, models: ModelsDep) -> s.ModelCard:
    """One model by id (404 if unknown)."""
    return _card(models.resolve(model_id))


@router.post(
    "/chat/completions",
    response_model=None,
    responses={200: {"model": s.ChatCompletion, "description": "JSON, or SSE when streamed"}},
)
async def create_chat_completion(
    body: s.ChatCompletionRequest,
    request: Request,
    completions: CompletionsDep,
    caller: CallerDep,
) -> Response:
    """Chat completion; ``stream: true`` answers with server-sent events."""
    return await serving.chat_completion(body, completions, caller, request)


@router.post(
    "/completions",
    response_model=None,
    responses={200: {"model": s.Completion, "description": "JSON, or SSE when streamed"}},
)
async def create_completion(
    body: s.CompletionRequest,
    request: Request,
    completions: CompletionsDep,
    caller: CallerDep,
) -> Response:
    """Legacy text completion of one prompt; ``stream: true`` answers with SSE."""
    return await serving.completion(body, completions, caller, request)
