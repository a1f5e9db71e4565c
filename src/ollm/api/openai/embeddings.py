"""OpenAI ``POST /v1/embeddings``: its request and response bodies and the route.

``input`` is a string, a list of strings, a list of token ids or a list of such lists
(at most :data:`MAX_INPUTS`); empty ones are a 400, as in OpenAI. ``encoding_format``
``base64`` gives each vector as the base64 of its little-endian float32 bytes (what the
official client asks for by default, and decodes). ``dimensions`` keeps that many leading
numbers and renormalizes; more than the model has is a 400. An input longer than the
model's embedding context is a 400 (``context_length_exceeded``): OpenAI never truncates.
"""

from __future__ import annotations

import base64
import struct
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from ollm.api.http.deps import EmbeddingsDep
from ollm.services.inference.embeddings import Embeddings

router = APIRouter(prefix="/v1", tags=["openai"])

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request

Input = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``. Unknown fields are a 400 naming them."""

    model_config = ConfigDict(extra="forbid")

    input: Input = Field(description="A string, strings, token ids, or lists of token ids.")
    model: str | None = Field(None, description="Model id; the server's default if omitted.")
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="float (the default) or base64 (little-endian float32 bytes)."
    )
    dimensions: int | None = Field(None, ge=1, description="Keep this many numbers per vector.")
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Input) -> Input:
        if isinstance(value, str):
            if not value:
                raise ValueError("input must not be an empty string")
            return value
        if not value:
            raise ValueError("input must not be an empty list")
        if len(value) > MAX_INPUTS:
            raise ValueError(f"at most {MAX_INPUTS} inputs are allowed per request")
        if any(isinstance(item, str | list) and not item for item in value):
            raise ValueError("input must not contain an empty string or an empty token list")
        return value

    def inputs(self) -> list[str | list[int]]:
        """The inputs one by one: a flat token list is one input, not many."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if all(isinstance(item, int) for item in value):
            return [list(value)]  # type: ignore[arg-type]
        return list(value)  # type: ignore[arg-type]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


def float32_base64(vector: list[float]) -> str:
    """``vector`` as little-endian float32 bytes in base64 (OpenAI's ``base64`` format)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_list(result: Embeddings, encoding_format: str | None) -> EmbeddingList:
    """The OpenAI response for ``result``."""
    encode = float32_base64 if encoding_format == "base64" else None
    data = [
        Embedding(index=i, embedding=encode(vector) if encode else vector)
        for i, vector in enumerate(result.vectors)
    ]
    tokens = result.prompt_tokens
    return EmbeddingList(
        data=data,
        model=result.model_id,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


@router.post("/embeddings")
async def create_embeddings(body: EmbeddingRequest, embeddings: EmbeddingsDep) -> EmbeddingList:
    """One unit-length vector per input, in the order given."""
    result = await embeddings.embed(
        model=body.model, inputs=body.inputs(), dimensions=body.dimensions
    )
    return embedding_list(result, body.encoding_format)
