"""Exception handlers: every failure leaves as ``{"error": {message, type, param, code}}``,
except under the Ollama dialect's ``/api/`` (not ``/api/v1/``), where it is Ollama's
``{"error": "message"}``, and under Anthropic's ``/v1/messages``, where it is
``{"type": "error", "error": {"type", "message"}}`` with the type Anthropic gives the
status. The status codes are the same in every shape.

Errors are mapped by type, never by matching message text. ``OllmError`` subclasses carry
their own status and code; validation errors and malformed JSON become a 400 that names
the offending field; unknown routes and methods keep their 404/405; anything else is a
logged 500 whose message reveals nothing internal.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ollm.db.errors import busy_error
from ollm.errors import OllmError

log = logging.getLogger(__name__)

_MAX_REPORTED = 3  # validation problems listed in one message


def error_body(
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def ollama_error_body(message: str) -> dict[str, Any]:
    """The Ollama error envelope."""
    return {"error": message}


def is_ollama_path(path: str) -> bool:
    """Whether ``path`` belongs to the Ollama dialect (``/api/...`` but not ``/api/v1/...``)."""
    return path.startswith("/api/") and not path.startswith("/api/v1/")


def is_anthropic_path(path: str) -> bool:
    """Whether ``path`` belongs to the Anthropic dialect (``/v1/messages`` and below)."""
    return path == "/v1/messages" or path.startswith("/v1/messages/")


# Anthropic names its error types by status (docs.anthropic.com, "Errors"); 503 is how
# ollm says "busy or stopping", which Anthropic's clients know as overloaded.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def anthropic_error_body(message: str, status_code: int) -> dict[str, Any]:
    """The Anthropic error envelope for an error of this HTTP status."""
    fallback = "api_error" if status_code >= 500 else "invalid_request_error"
    error_type = _ANTHROPIC_TYPES.get(status_code, fallback)
    return {"type": "error", "error": {"type": error_type, "message": message}}


def shaped_error_body(path: str, status_code: int, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` (an OpenAI envelope) in the shape the dialect of ``path`` expects."""
    if is_ollama_path(path):
        return ollama_error_body(body["error"]["message"])
    if is_anthropic_path(path):
        return anthropic_error_body(body["error"]["message"], status_code)
    return body


def _shaped(request: Request, body: dict[str, Any], status_code: int) -> dict[str, Any]:
    return shaped_error_body(request.url.path, status_code, body)


def ollm_error_body(exc: OllmError) -> dict[str, Any]:
    """The envelope for one of ollm's own errors (also used for in-stream error events)."""
    return error_body(exc.message, error_type=exc.error_type, param=exc.param, code=exc.code)


def _field_path(loc: Sequence[int | str]) -> str:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = part
        else:
            path += f".{part}"
    return path


def _describe(error: dict[str, Any]) -> tuple[str, str | None]:
    """A sentence a person can act on for one pydantic error, and the field it names."""
    loc = list(error.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    kind = error.get("type", "")
    if kind == "json_invalid":
        reason = error.get("ctx", {}).get("error", "invalid JSON")
        position = loc[0] if loc else "?"
        return f"The request body is not valid JSON: {reason} (at character {position}).", None
    # Tagged-union and function-validator branches add noise like "function-after[...]".
    loc = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("str", "list")))]
    field = _field_path(loc) or None
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {field}", field
    if kind == "missing" and field is None:
        return "The request body is empty; send a JSON object.", None
    if kind == "missing":
        return f"Missing required parameter: '{field}'.", field
    if field is None and kind in ("model_attributes_type", "dict_type", "model_type"):
        return "The request body must be a JSON object (send Content-Type: application/json).", None
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if field is None:
        return message, None
    return f"Invalid value for '{field}': {message}", field


def validation_error_body(errors: Sequence[Any]) -> dict[str, Any]:
    """One 400 envelope for a list of pydantic/FastAPI validation errors."""
    described = [_describe(dict(e)) for e in errors[:_MAX_REPORTED]]
    if not described:
        return error_body("Invalid request.")
    message = "; ".join(text for text, _ in described)
    if len(errors) > _MAX_REPORTED:
        message += f" (and {len(errors) - _MAX_REPORTED} more problems)"
    return error_body(message, param=described[0][1])


async def _handle_ollm_error(request: Request, exc: OllmError) -> JSONResponse:
    headers = None
    retry_after = getattr(exc, "retry_after", None)  # 429s and 503s say when to come back
    if isinstance(retry_after, int):
        headers = {"Retry-After": str(retry_after)}
    if exc.status_code >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    body = _shaped(request, ollm_error_body(exc), exc.status_code)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def _handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    body = _shaped(request, validation_error_body(exc.errors()), 400)
    return JSONResponse(body, status_code=400)


async def _handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
        error_type = "invalid_request_error"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}"
        error_type = "invalid_request_error"
    else:
        message = str(exc.detail)
        error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse(
        _shaped(request, error_body(message, error_type=error_type), exc.status_code),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _handle_client_disconnect(request: Request, _exc: ClientDisconnect) -> Response:
    log.info(
        "client left before %s %s was answered; request aborted", request.method, request.url.path
    )
    return Response(status_code=499)  # nginx's "client closed request"; nobody reads it


async def _handle_database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    busy = busy_error(exc)
    if busy is None:
        return await _handle_unexpected(request, exc)
    log.warning("%s %s: database busy (%s)", request.method, request.url.path, exc.orig)
    return await _handle_ollm_error(request, busy)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body(
        "The server had an error while processing your request.", error_type="server_error"
    )
    return JSONResponse(_shaped(request, body, 500), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(OllmError, _handle_ollm_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(ClientDisconnect, _handle_client_disconnect)
    app.add_exception_handler(DBAPIError, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
