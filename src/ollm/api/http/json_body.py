"""JSON bodies sent without ``Content-Type: application/json``, read as JSON anyway.

Ollama reads every body as JSON whatever it is labelled, and its clients rely on that:
the ``curl -d '{...}'`` of its docs sends ``application/x-www-form-urlencoded``, litellm's
async Ollama client ``application/octet-stream``, some scripts ``text/plain`` or nothing.
FastAPI parses a body as JSON only when its type says JSON (or, with
``strict_content_type=False``, is missing), and otherwise fails validation with "must be a
JSON object". This middleware relabels such bodies as ``application/json`` on the API
paths (``/api/...`` and ``/v1/...``), so one place serves every dialect's routes, and bad
JSON is still the dialect's 400 "not valid JSON" from the usual handler.

Installed outside the request-limits middleware, so a relabelled body gets its JSON checks
(depth, UTF-8, surrogates, non-finite numbers) too. Left alone: ``multipart/`` bodies
(uploads), JSON types (``application/json``, ``+json``), and ``/api/blobs/`` (raw files).

No new cross-site hole: a foreign page's ``text/plain`` POST (no CORS preflight) is already
refused by the Origin guard (:mod:`ollm.api.http.hosts`) whatever its content type.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIXES = ("/api/", "/v1/")
EXEMPT_PREFIXES = ("/api/blobs/",)
# Types a JSON body arrives under from clients that do not label it (b"": none at all).
RELABELLED = frozenset(
    {b"", b"application/x-www-form-urlencoded", b"application/octet-stream", b"text/plain"}
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = b"application/json"


def relabels(path: str, method: str, content_type: bytes | None) -> bool:
    """Whether a request's body should be read as JSON despite its ``content_type``."""
    if method not in _BODY_METHODS or not path.startswith(API_PREFIXES):
        return False
    if path.startswith(EXEMPT_PREFIXES):
        return False
    main = (content_type or b"").split(b";", 1)[0].strip().lower()
    return main in RELABELLED


class JsonBodyMiddleware:
    """Rewrites the ``content-type`` of API request bodies that are JSON in all but name."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: list[tuple[bytes, bytes]] = list(scope.get("headers", ()))
            types = [value for name, value in headers if name == b"content-type"]
            content_type = types[0] if types else None
            if relabels(scope["path"], scope["method"], content_type):
                kept = [(n, v) for n, v in headers if n != b"content-type"]
                scope = {**scope, "headers": [*kept, (b"content-type", _JSON)]}
        await self.app(scope, receive, send)


def install_json_body(app: Starlette) -> None:
    """Add :class:`JsonBodyMiddleware` to ``app`` (outside whatever was added before)."""
    app.add_middleware(JsonBodyMiddleware)
