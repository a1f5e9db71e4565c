"""``POST /api/create`` in Ollama's JSON form, and what a created model's preset means for
the dialect's requests.

The model is made (:meth:`ModelService.create`) before the response starts, so every
refusal is an ordinary 4xx; the statuses are then streamed as Ollama's are ("reading model
metadata", "creating system layer", ..., "writing manifest", "success"), or with
``stream: false`` only the last one is returned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypeVar

from fastapi.responses import JSONResponse, Response

from ollm.api.ollama import schemas as s
from ollm.api.ollama.ndjson import NDJSONResponse, ndjson_stream
from ollm.errors import OllmError
from ollm.services.models.blobs import parse_digest
from ollm.services.models.preset import ModelPreset
from ollm.services.models.service import CreateSpec, ModelService

Body = TypeVar("Body", s.ChatRequest, s.GenerateRequest)


def spec_of(body: s.CreateRequest) -> CreateSpec:
    """The service's view of a create request (a malformed blob digest is a 400)."""
    blob = None
    if body.files:
        (digest,) = body.files.values()
        blob = parse_digest(digest)
    messages = None
    if body.messages is not None:
        messages = [(message.role, message.content) for message in body.messages]
    license_text = body.license if isinstance(body.license, str) else None
    return CreateSpec(
        name=body.model_name or "",
        base=body.from_,
        blob=blob,
        system=body.system,
        template=body.template,
        license=license_text,
        parameters=body.parameters or {},
        messages=messages,
    )


async def create(models: ModelService, body: s.CreateRequest) -> Response:
    """``POST /api/create``: make the model, then report its steps."""
    statuses = await models.create(spec_of(body))
    if body.stream:
        return NDJSONResponse(ndjson_stream(_events(statuses)))
    return JSONResponse({"status": statuses[-1]})


async def _events(statuses: Sequence[str]) -> AsyncIterator[dict[str, object]]:
    for status in statuses:
        yield {"status": status}


def preset_of(models: ModelService, name: str | None) -> ModelPreset | None:
    """The preset of the model ``name`` means, if it was created with one. An unknown
    name has none here: the generation itself answers it with a 404."""
    try:
        return models.resolve(name).preset
    except OllmError:
        return None


def with_model_defaults(models: ModelService, body: Body) -> Body:
    """``body`` with the created model's parameters filled in for every option the
    request leaves out (its own options win), as Ollama applies a model's ``PARAMETER``s."""
    preset = preset_of(models, body.model_name)
    if preset is None or not preset.parameters:
        return body
    given = body.options.model_dump(exclude_none=True)
    options = s.Options.model_validate({**preset.parameters, **given})
    return body.model_copy(update={"options": options})
