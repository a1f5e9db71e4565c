"""Browser-facing protections: CORS (closed unless origins are allowed) and security
headers on every response.

- CORS: without ``OLLM_CORS_ORIGINS`` no cross-origin page may read a response (no
  ``Access-Control-Allow-Origin`` is ever sent and preflights fail). Listed origins get
  Starlette's ``CORSMiddleware``, credentials included unless the list is ``*``.
- Every response: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY``.
- HTML responses (the web UI): a strict ``Content-Security-Policy`` — only this origin's
  scripts, no plugins, no ``<base>``, no framing. FastAPI's own ``/docs`` and ``/redoc``
  pages load their scripts from a CDN and inline, so they are left without it.

Headers a route set itself are kept. Plain ASGI, so streamed replies are not buffered.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollm.settings import Settings

SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# FastAPI's interactive docs need its CDN scripts: no CSP there (see the module docstring).
_NO_CSP_PATHS = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every response and the CSP to HTML ones."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wants_csp = not scope["path"].startswith(_NO_CSP_PATHS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                content_type = headers.get("content-type", "").lower()
                if wants_csp and content_type.startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(app: Starlette, settings: Settings) -> None:
    """CORS for ``settings.cors_origins`` (if any), then the security headers, outermost
    so that every answer (a 413 or 429 from the limits too) carries them."""
    origins = list(settings.cors_origins)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
