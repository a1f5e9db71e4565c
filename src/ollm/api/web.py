"""The web UI: ``index.html`` for the app's client routes and its hashed ``/assets``.

The page is served only to requests that ask for HTML (a browser's ``Accept`` says
``text/html``); everything else at ``/`` falls through to the Ollama probe ("Ollama is
running"), which Ollama's clients rely on. The page itself needs no login: the app asks
``/api/v1/auth/config`` and shows its login screen when auth is on.

The build directory is read per request from ``app.state.web_dist``, so a source checkout
without a build answers a small 503 page naming the command to run, not a 500.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from ollm.web import DIST

# Hashed file names never change content: a browser may keep them for a year.
ASSET_CACHE = "public, max-age=31536000, immutable"
# index.html names the current hashes, so it must be revalidated every time.
PAGE_CACHE = "no-cache"
CLIENT_ROUTES = ("/", "/login", "/c/{chat_id}")

_NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ollm: web UI not built</title></head>
<body><h1>The web UI is not built</h1>
<p>This ollm runs from a source checkout whose web UI has not been built yet.
Run <code>make serve</code> (or <code>scripts/build-web.sh</code>) and reload.</p>
<p>The APIs under <code>/v1</code>, <code>/api</code> and <code>/api/v1</code> work meanwhile.</p>
</body></html>
"""


def wants_html(scope: Scope) -> bool:
    """Whether the request's ``Accept`` header asks for HTML (browsers' navigations do)."""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value.lower()
    return False


class HtmlOnlyRoute(APIRoute):
    """A route that matches only requests asking for HTML, so that other requests to the
    same path reach the routes after it (the Ollama probe at ``/``)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and not wants_html(scope):
            return Match.NONE, {}
        return match, child


def dist_dir(request: Request) -> Path:
    """Where the built app is (``app.state.web_dist``, by default the package's)."""
    return getattr(request.app.state, "web_dist", DIST)


router = APIRouter(tags=["web"], include_in_schema=False)
pages = APIRouter(route_class=HtmlOnlyRoute, include_in_schema=False)


async def index(request: Request) -> Response:
    """The single-page app; it routes on the client."""
    page = dist_dir(request) / "index.html"
    if not page.is_file():
        return HTMLResponse(_NOT_BUILT, status_code=503, headers={"Cache-Control": "no-store"})
    return FileResponse(page, media_type="text/html", headers={"Cache-Control": PAGE_CACHE})


for _path in CLIENT_ROUTES:
    pages.add_api_route(_path, index, methods=["GET", "HEAD"])
router.include_router(pages)


@router.api_route("/assets/{name:path}", methods=["GET", "HEAD"])
async def asset(name: str, request: Request) -> Response:
    """A built file (scripts, styles) by its hashed name; nothing outside ``assets/``."""
    root = (dist_dir(request) / "assets").resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return Response("Not Found", status_code=404, media_type="text/plain")
    return FileResponse(path, headers={"Cache-Control": ASSET_CACHE})
