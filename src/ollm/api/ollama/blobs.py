"""``HEAD`` and ``POST /api/blobs/{digest}``: whether a file is stored, and uploading one.

The body is streamed to disk (:class:`ollm.services.models.blobs.BlobStore`), never read
into memory: this path is exempt from the request-size middleware and has its own limit,
``max_blob_size``. As in Ollama, a blob already stored answers 200 without reading the
body, a new one 201 once its digest checked out.
"""

from __future__ import annotations

from fastapi.responses import Response
from starlette.requests import Request

from ollm.services.models.blobs import parse_digest
from ollm.services.models.service import ModelService


def exists(models: ModelService, digest: str) -> Response:
    """``HEAD /api/blobs/{digest}``: 200 if stored, 404 if not (400: not a digest)."""
    sha256 = parse_digest(digest)
    return Response(status_code=200 if models.blobs.exists(sha256) else 404)


async def upload(models: ModelService, digest: str, request: Request) -> Response:
    """``POST /api/blobs/{digest}``: 201 once stored and verified; 400 on a digest
    mismatch, 413 past ``max_blob_size``."""
    sha256 = parse_digest(digest)
    if models.blobs.exists(sha256):
        return Response(status_code=200)
    declared = request.headers.get("content-length", "")
    length = int(declared) if declared.isdigit() else None
    await models.blobs.receive(sha256, request.stream(), declared=length)
    return Response(status_code=201)
