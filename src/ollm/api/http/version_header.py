"""``X-Ollm-Version`` on every response: which ollm answered.

``/api/version`` speaks for the Ollama dialect and reports an Ollama version (clients gate
features on it, see :mod:`ollm.api.ollama.routes`), so ollm's own version travels here, and
in ``/api/v1/system``'s ``versions``. Plain ASGI, so streamed replies are not buffered.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollm import __version__

HEADER = "X-Ollm-Version"


class VersionHeaderMiddleware:
    """Adds ``X-Ollm-Version: <ollm's version>`` to every HTTP response."""

    def __init__(self, app: ASGIApp, *, version: str = __version__) -> None:
        self.app = app
        self.version = version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = self.version
            await send(message)

        await self.app(scope, receive, send_with_version)
