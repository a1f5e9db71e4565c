"""Ollama-compatible routes under ``/api``. Thin: parse, call the serving layer, return.

``GET /`` and ``HEAD /`` answer "Ollama is running", the text Ollama's clients probe for.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response

from ollm.api.http.auth import admin_user
from ollm.api.http.deps import CallerDep, CompletionsDep, ModelsDep
from ollm.api.ollama import blobs, catalog, create, serving
from ollm.api.ollama import schemas as s

router = APIRouter(tags=["ollama"])

RUNNING = "Ollama is running"

_NDJSON = {"content": {"application/x-ndjson": {}}, "description": "NDJSON unless stream=false"}


@router.get("/", response_class=PlainTextResponse)
@router.head("/", response_class=PlainTextResponse)
async def probe() -> str:
    """What Ollama answers at its root; clients use it to check the server is up."""
    return RUNNING


@router.post("/api/chat", response_model=None, responses={200: _NDJSON})
async def chat(
    body: s.ChatRequest,
    request: Request,
    completions: CompletionsDep,
    models: ModelsDep,
    caller: CallerDep,
) -> Response:
    """Chat; streamed as NDJSON unless ``stream`` is false."""
    body = create.with_model_defaults(models, body)  # a created model's parameters
    return await serving.chat(body, completions, models, caller, request)


@router.post("/api/generate", response_model=None, responses={200: _NDJSON})
async def generate(
    body: s.GenerateRequest,
    request: Request,
    completions: CompletionsDep,
    models: ModelsDep,
    caller: CallerDep,
) -> Response:
    """Complete a prompt; streamed as NDJSON unless ``stream`` is false."""
    body = create.with_model_defaults(models, body)  # a created model's parameters
    return await serving.generate(body, completions, models, caller, request)


@router.get("/api/tags", response_model_exclude_none=True)
async def tags(models: ModelsDep) -> s.ModelList:
    """The models this server can serve."""
    return catalog.list_models(models)


@router.post("/api/show", response_model_exclude_none=True)
async def show(body: s.ShowRequest, models: ModelsDep) -> s.ShowReply:
    """Details, metadata, template and license of one model."""
    return catalog.show(models, body.model_name or "")


@router.get("/api/ps", response_model_exclude_none=True)
async def ps(models: ModelsDep) -> s.RunningList:
    """The models loaded in memory now."""
    return catalog.running(models)


# Changing what a name means changes it for everyone: with auth on, admins only (with auth
# off the one local user is the admin). Reading the model list stays open to every user.
_ADMIN = [Depends(admin_user)]


@router.post("/api/pull", response_model=None, responses={200: _NDJSON}, dependencies=_ADMIN)
async def pull(body: s.PullRequest, request: Request, models: ModelsDep) -> Response:
    """Download a model; progress as NDJSON unless ``stream`` is false."""
    return await catalog.pull(models, body, request)


@router.delete("/api/delete", response_model=None, dependencies=_ADMIN)
async def delete(body: s.DeleteRequest, models: ModelsDep) -> Response:
    """Remove a model (bundled ones cannot be removed)."""
    return await catalog.delete(models, body.model_name or "")


@router.post("/api/copy", response_model=None, dependencies=_ADMIN)
async def copy(body: s.CopyRequest, models: ModelsDep) -> Response:
    """Make a model available under a second name."""
    return await catalog.copy(models, body)


@router.post("/api/create", response_model=None, responses={200: _NDJSON}, dependencies=_ADMIN)
async def create_model(body: s.CreateRequest, models: ModelsDep) -> Response:
    """Make a model from another one or an uploaded GGUF blob, with a system prompt,
    template, parameters and history; the steps as NDJSON unless ``stream`` is false."""
    return await create.create(models, body)


@router.head("/api/blobs/{digest}", response_model=None, dependencies=_ADMIN)
async def blob_exists(digest: str, models: ModelsDep) -> Response:
    """200 if the blob is stored, 404 if not."""
    return blobs.exists(models, digest)


@router.post("/api/blobs/{digest}", response_model=None, status_code=201, dependencies=_ADMIN)
async def blob_upload(digest: str, request: Request, models: ModelsDep) -> Response:
    """Upload a file (the body, as it is) under its sha256; verified as it is written."""
    return await blobs.upload(models, digest, request)


# The Ollama version this dialect answers as. Clients gate features on it (a minimum for
# tools, structured outputs, thinking, ...), so it must read as a recent Ollama, not as
# ollm's own 0.x. 0.12.6 is the version Ollama's own API reference shows for /api/version,
# and its /api surface (chat, generate, tools, create, blobs, show's capabilities) is the
# one this dialect implements. ollm's own version: the X-Ollm-Version header on every
# response (ollm.api.http.version_header) and /api/v1/system's ``versions``.
OLLAMA_COMPAT_VERSION = "0.12.6"


@router.get("/api/version")
async def version() -> s.Version:
    """The Ollama version this server is compatible with (ollm's own: ``X-Ollm-Version``)."""
    return s.Version(version=OLLAMA_COMPAT_VERSION)
