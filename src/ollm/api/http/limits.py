"""Request limits checked before any route sees a body: its size, its encoding, its nesting.

What FastAPI already does, and is not repeated here: malformed JSON, and JSON nested deeper
than Python's recursion limit (about 1000 levels), are a 400 "There was an error parsing the
body". What it does not do:

- Refuse a body that is too large. Starlette reads any body into memory whole; this
  middleware answers 413 as soon as ``Content-Length`` or the bytes received so far exceed
  ``max_body_size``, without reading the rest.
- Say clearly that a body is not UTF-8 (JSON exchanged between systems must be, RFC 8259).
- Refuse JSON nested deeper than ``max_json_depth``: such a document parses, but recursive
  code after the parser (JSON schemas turned into grammars, validators) pays per level.

Errors leave in the dialect's shape (:mod:`ollm.api.http.errors`). The middleware is plain ASGI,
not ``BaseHTTPMiddleware``, so streamed replies and disconnect detection pass through
untouched: after the buffered body is handed over, ``receive`` is the server's own again.
"""

from __future__ import annotations

import math
import re

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollm.api.http.errors import error_body, shaped_error_body
from ollm.settings import Settings

# A JSON string, quotes included: the unrolled form runs without backtracking.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")
# A \uXXXX escape in the surrogate range, not itself escaped (an even run of backslashes
# before it), and a well-formed high + low pair of them.
_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_PAIR = re.compile(
    rb"(?<!\\)((?:\\\\)*)\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
# Outside strings: Python's json reads NaN and Infinity, which JSON (RFC 8259) has not.
_NON_FINITE = re.compile(rb"(?<![\w.])(?:NaN|-?Infinity)(?![\w.])")
# A number with an exponent, or 300+ digits: the only ones that can overflow a double.
_BIG_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?[eE][+-]?\d+|-?\d{300,}(?:\.\d+)?")
# Bodies these content types announce are not JSON; they are only size-checked.
_NOT_JSON = ("multipart/", "application/octet-stream")
# Model uploads stream to disk under their own limit (max_blob_size), never buffered here.
STREAMED_PATHS = ("/api/blobs/",)


def error_response(
    path: str,
    status_code: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in the dialect of ``path``: Ollama's ``{"error": "..."}`` under ``/api/``
    (not ``/api/v1/``), Anthropic's under ``/v1/messages``, the OpenAI envelope everywhere
    else. Usable as an ASGI app."""
    body = shaped_error_body(
        path, status_code, error_body(message, error_type=error_type, code=code)
    )
    return JSONResponse(body, status_code=status_code, headers=headers)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text ``body`` nests arrays/objects more than ``limit`` levels deep.

    Strings are removed (brackets inside them do not count), then every pass deletes the
    innermost ``[]``/``{}`` pairs, which lowers the depth by exactly one; what is left after
    ``limit`` passes is deeper than ``limit``. Each pass is one C-level regex scan. Text that
    is not balanced JSON is not judged here: the parser reports it.
    """
    return _nests_deeper(_JSON_STRING.sub(b'""', body), limit)


def _nests_deeper(bare: bytes, limit: int) -> bool:
    """:func:`json_depth_exceeds` on a text whose strings are already emptied."""
    brackets = _NOT_BRACKET.sub(b"", bare)
    if len(brackets) <= 2 * limit:
        return False  # too few brackets to nest that deep
    for _ in range(limit):
        brackets = _EMPTY_PAIR.sub(b"", brackets)
        if not brackets:
            return False
    return _EMPTY_PAIR.search(brackets) is not None


def lone_surrogate_at(body: bytes) -> int | None:
    """Offset of the first ``\\uD800``-``\\uDFFF`` escape that is not half of a valid
    pair, or None. Such a string cannot be encoded as UTF-8 (so not tokenized, stored in
    PostgreSQL, or sent back as JSON): the body is refused at the edge, for every field of
    every dialect at once, rather than failing deep inside."""
    if b"\\u" not in body:
        return None
    match = _SURROGATE.search(_SURROGATE_PAIR.sub(rb"\1------------", body))
    return match.start() if match else None


def non_finite_number(body: bytes) -> str | None:
    """The first ``NaN``/``Infinity`` literal, or number too large for a double (``1e400``),
    outside the strings of a JSON text; None when there is none. Such values parse in
    Python, then poison whatever stores or exports them."""
    return _non_finite_in(_JSON_STRING.sub(b'""', body))


def _non_finite_in(bare: bytes) -> str | None:
    """:func:`non_finite_number` on a text whose strings are already emptied."""
    if (match := _NON_FINITE.search(bare)) is not None:
        return match.group().decode()
    for match in _BIG_NUMBER.finditer(bare):
        if math.isinf(float(match.group())):
            text = match.group().decode()
            return text if len(text) <= 40 else text[:37] + "..."
    return None


def body_problem(body: bytes, *, max_json_depth: int) -> str | None:
    """Why a JSON request body is refused (400), or None if these checks pass."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"The request body is not valid UTF-8 (invalid byte at position {exc.start}); "
            "send JSON encoded as UTF-8."
        )
    # Strings emptied once, for both checks that must not look inside them: one regex
    # pass over what may be 16 MB.
    bare = _JSON_STRING.sub(b'""', body)
    if _nests_deeper(bare, max_json_depth):
        return f"The request body's JSON is nested more than {max_json_depth} levels deep."
    if (offset := lone_surrogate_at(body)) is not None:
        return (
            f"The request body's JSON has a lone UTF-16 surrogate escape at byte {offset}: "
            "a \\uD800-\\uDFFF escape must be half of a pair; such text is not Unicode."
        )
    if (number := _non_finite_in(bare)) is not None:
        return (
            f"The request body's JSON has the number {number}, which is not finite: JSON "
            "numbers must be finite (no NaN or Infinity)."
        )
    return None


class _BodyTooLarge(Exception):
    """Raised inside the middleware when the received bytes pass the limit."""


class RequestLimitsMiddleware:
    """413 for bodies over ``max_body_size`` bytes; 400 for JSON bodies that are not UTF-8
    or nest deeper than ``max_json_depth``."""

    def __init__(self, app: ASGIApp, *, max_body_size: int, max_json_depth: int) -> None:
        self.app = app
        self.max_body_size = max_body_size
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STREAMED_PATHS):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        path: str = scope["path"]
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_size:
            await self._too_large(path)(scope, receive, send)
            return
        try:
            body, finished = await self._read_body(receive)
        except _BodyTooLarge:
            await self._too_large(path)(scope, receive, send)
            return
        content_type = headers.get("content-type", "").lower()
        if body and not content_type.startswith(_NOT_JSON):
            problem = body_problem(body, max_json_depth=self.max_json_depth)
            if problem is not None:
                await error_response(path, 400, problem, code="invalid_body")(scope, receive, send)
                return
        await self.app(scope, _replay(body, finished, receive), send)

    async def _read_body(self, receive: Receive) -> tuple[bytes, Message | None]:
        """The whole request body, and the message that ended it early (a disconnect)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), message
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_size:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None

    def _too_large(self, path: str) -> JSONResponse:
        return error_response(
            path,
            413,
            f"The request body is larger than the server's limit of {self.max_body_size} bytes.",
            code="request_too_large",
            headers={"Connection": "close"},
        )


def _replay(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands the buffered body over once, then is the server's own
    (so a route still hears ``http.disconnect`` while it streams)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if ended is not None:
            return ended
        return await receive()

    return replay


def install_request_limits(app: Starlette, settings: Settings) -> None:
    """Add :class:`RequestLimitsMiddleware` to ``app`` with the limits of ``settings``."""
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_size=settings.max_body_size,
        max_json_depth=settings.max_json_depth,
    )
