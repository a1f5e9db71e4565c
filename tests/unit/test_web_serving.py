"""Serving the web UI: the page for browsers at the app's client routes, "Ollama is
running" for everyone else at ``/``, hashed assets with a long cache, the strict CSP on
the page, and a 503 page (not a 500) when the UI was never built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asgi_helpers import Harness, running_app

from ollm.api.http.security_headers import CONTENT_SECURITY_POLICY
from ollm.api.web import ASSET_CACHE

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PAGE = '<!doctype html><title>ollm</title><script type="module" src="/assets/app-1a2b.js">'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text(PAGE)
    (dist / "assets" / "app-1a2b.js").write_text("console.log('ollm')")
    (tmp_path / "secret.txt").write_text("not for the web")
    async with running_app(tmp_path) as harness:
        harness.app.state.web_dist = dist
        yield harness


async def test_browsers_get_the_page_at_every_client_route(h: Harness) -> None:
    for path in ("/", "/c/abc", "/login"):
        response = await h.client.get(path, headers=BROWSER)
        assert response.status_code == 200, path
        assert response.text == PAGE
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["Cache-Control"] == "no-cache"
    head = await h.client.head("/", headers=BROWSER)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/html")


async def test_other_clients_still_get_the_ollama_probe(h: Harness) -> None:
    for accept in (None, "*/*", "application/json"):
        headers = {"Accept": accept} if accept else {}
        for method in ("GET", "HEAD"):
            response = await h.client.request(method, "/", headers=headers)
            assert response.status_code == 200
            assert "Content-Security-Policy" not in response.headers
        assert (await h.client.get("/", headers=headers)).text == "Ollama is running"
    # Client routes other than / are the page's only: an API client gets a 404 there.
    assert (await h.client.get("/c/abc", headers={"Accept": "*/*"})).status_code == 404


async def test_assets_are_served_with_a_long_cache(h: Harness) -> None:
    response = await h.client.get("/assets/app-1a2b.js")
    assert response.status_code == 200
    assert response.text == "console.log('ollm')"
    assert response.headers["Cache-Control"] == ASSET_CACHE
    assert "javascript" in response.headers["content-type"]
    assert (await h.client.get("/assets/missing.js")).status_code == 404
    # Nothing outside assets/, however the path is spelt.
    for path in ("/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt"):
        response = await h.client.get(path)
        assert response.status_code == 404, path
        assert "not for the web" not in response.text


async def test_unbuilt_ui_is_a_503_page_not_a_500(h: Harness, tmp_path: Path) -> None:
    h.app.state.web_dist = tmp_path / "nowhere"
    response = await h.client.get("/", headers=BROWSER)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "make serve" in response.text
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert (await h.client.get("/")).text == "Ollama is running"
