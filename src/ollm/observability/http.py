"""ASGI middleware counting requests by route template, never by raw path.

``/api/v1/chats/{chat_id}`` is one series however many chats there are; a path that
matches no route is ``unmatched``. The duration runs to the end of the response body, so
for a stream it is the stream's length.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollm.observability.metrics import Metrics

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that served ``scope`` (set by the router as it matched)."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


class HttpMetricsMiddleware:
    """Records ``ollm_http_requests_total`` and the request duration histogram."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before it starts a response

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe_http(scope["method"], route_template(scope), status, elapsed)
