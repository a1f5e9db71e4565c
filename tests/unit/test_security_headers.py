"""Security headers on every response, CSP on HTML, and CORS: closed by default, open to
the origins listed in ``cors_origins``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from api_v1_harness import v1_app
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ollm.api.http.security_headers import (
    CONTENT_SECURITY_POLICY,
    SECURITY_HEADERS,
    SecurityHeadersMiddleware,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

ORIGIN = "https://chat.example.org"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)


async def test_every_kind_of_response_carries_the_headers(tmp_path: Path) -> None:
    async with v1_app(tmp_path, max_body_size=2048) as h:
        ok = await h.client.get("/v1/models")
        missing = await h.client.get("/nowhere")
        too_big = await h.client.post("/api/chat", content=b"x" * 4096)
        stream = await h.client.post(
            "/api/chat", json={"model": "fake:1", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert [r.status_code for r in (ok, missing, too_big, stream)] == [200, 404, 413, 200]
        for response in (ok, missing, too_big, stream):
            _assert_security_headers(response)
            assert "Content-Security-Policy" not in response.headers  # JSON, not a page


async def test_html_gets_the_strict_csp_but_the_api_docs_do_not() -> None:
    async def page(_request: object) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>ollm</title>")

    app = Starlette(routes=[Route("/", page), Route("/docs", page)])
    app.add_middleware(SecurityHeadersMiddleware)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://localhost"
    ) as c:
        ui = await c.get("/")
        assert ui.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "script-src 'self'" in CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
        _assert_security_headers(ui)
        docs = await c.get("/docs")
        assert "Content-Security-Policy" not in docs.headers
        _assert_security_headers(docs)


async def test_cors_closed_by_default(tmp_path: Path) -> None:
    async with v1_app(tmp_path) as h:
        preflight = await h.client.options("/v1/chat/completions", headers=PREFLIGHT)
        assert preflight.status_code >= 400
        assert "access-control-allow-origin" not in preflight.headers
        simple = await h.client.get("/v1/models", headers={"Origin": ORIGIN})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers


async def test_cors_open_to_an_allowed_origin_only(tmp_path: Path) -> None:
    async with v1_app(tmp_path, cors_origins=[ORIGIN]) as h:
        preflight = await h.client.options("/v1/chat/completions", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        simple = await h.client.get("/v1/models", headers={"Origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN
        _assert_security_headers(simple)

        other = {**PREFLIGHT, "Origin": "https://evil.example"}
        refused = await h.client.options("/v1/chat/completions", headers=other)
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers


async def test_cross_site_writes_only_from_allowed_origins(tmp_path: Path) -> None:
    """With auth off, a browser's cross-site POST is refused unless its origin is listed."""
    body = {"title": "from a web page"}
    async with v1_app(tmp_path, cors_origins=[ORIGIN]) as h:
        allowed = {"Origin": ORIGIN, "Sec-Fetch-Site": "cross-site"}
        assert (await h.client.post("/api/v1/chats", json=body, headers=allowed)).status_code == 201
        evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        refused = await h.client.post("/api/v1/chats", json=body, headers=evil)
        assert refused.status_code == 403
