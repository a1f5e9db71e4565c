"""Ollama ``POST /api/embed`` and the older ``POST /api/embeddings``: bodies and routes.

As Ollama does them:

* ``/api/embed`` takes ``input`` (a string or a list of strings), answers unit-length
  ``embeddings`` with ``total_duration``, ``load_duration`` (nanoseconds) and
  ``prompt_eval_count``. ``truncate`` (default true) cuts an input longer than the
  context (``options.num_ctx`` when smaller) to its first tokens; false makes it a 400.
  ``dimensions`` keeps that many leading numbers, renormalized (more than the model has
  is a 400 here, where Ollama would quietly return the full vector). An empty input only
  loads the model and answers no embeddings.
* ``/api/embeddings`` takes one ``prompt`` and answers one ``embedding``, the model's
  pooled vector as it is, not normalized (Ollama's legacy behaviour); no truncation. An
  empty prompt only loads the model and answers ``{"embedding": []}``.

Unknown fields are ignored with a warning in the log, as in the rest of the dialect.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictStr, field_validator

from ollm.api.http.deps import EmbeddingsDep
from ollm.api.ollama.schemas import LoadingRequest

router = APIRouter(tags=["ollama"])


class EmbedRequest(LoadingRequest):
    """``POST /api/embed``."""

    input: StrictStr | list[StrictStr] | None = Field(None, description="Text or texts.")
    truncate: bool = Field(True, description="Cut inputs longer than the context (default).")
    dimensions: int | None = Field(None, ge=1, description="Keep this many numbers per vector.")

    @field_validator("truncate", mode="before")
    @classmethod
    def _null_truncate(cls, value: Any) -> Any:
        return True if value is None else value

    def inputs(self) -> list[str]:
        """The texts to embed; an empty string alone means none (a load), as in Ollama."""
        if self.input is None or self.input == "":
            return []
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingsRequest(LoadingRequest):
    """``POST /api/embeddings`` (the older endpoint)."""

    prompt: StrictStr | None = Field(None, description="The text to embed.")


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0


class EmbeddingsResponse(BaseModel):
    embedding: list[float]


def _nanos(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


@router.post("/api/embed")
async def embed(body: EmbedRequest, embeddings: EmbeddingsDep) -> EmbedResponse:
    """Unit-length vectors for ``input``, in order."""
    started = time.perf_counter()
    inputs = body.inputs()
    if not inputs:
        load = await embeddings.load(body.model_name, keep_alive=body.keep_alive)
        model = embeddings.models.resolve(body.model_name).model_id
        return EmbedResponse(
            model=model,
            embeddings=[],
            total_duration=_nanos(time.perf_counter() - started),
            load_duration=_nanos(load),
        )
    result = await embeddings.embed(
        model=body.model_name,
        inputs=inputs,
        truncate=body.truncate,
        dimensions=body.dimensions,
        context=body.options.num_ctx,
        keep_alive=body.keep_alive,
    )
    return EmbedResponse(
        model=result.model_id,
        embeddings=result.vectors,
        total_duration=_nanos(time.perf_counter() - started),
        load_duration=_nanos(result.load_duration),
        prompt_eval_count=result.prompt_tokens,
    )


@router.post("/api/embeddings")
async def embeddings_legacy(
    body: EmbeddingsRequest, embeddings: EmbeddingsDep
) -> EmbeddingsResponse:
    """The model's pooled vector for ``prompt``, not normalized (the older endpoint)."""
    if not body.prompt:
        await embeddings.load(body.model_name, keep_alive=body.keep_alive)
        return EmbeddingsResponse(embedding=[])
    result = await embeddings.embed(
        model=body.model_name,
        inputs=[body.prompt],
        normalize=False,
        context=body.options.num_ctx,
        keep_alive=body.keep_alive,
    )
    return EmbeddingsResponse(embedding=result.vectors[0])
