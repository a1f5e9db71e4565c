"""Fixtures of the browser suite: the web UI in headless Chromium against real servers.

Servers come from ``run_server`` of ``tests/integration/conftest.py`` with the real bundled
model ``smollm2:135m``, on free loopback ports, stopped at the end. Playwright's sync API
drives Debian's Chromium (``$OLLM_TEST_CHROMIUM``, default ``/usr/bin/chromium``): one
browser for the session, a fresh context per test.

The built UI (``src/ollm/web/dist/index.html``) is part of the product: without it every test
here fails with a message saying so, never skips.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_ui import (
    ARTIFACTS,
    DESKTOP,
    DIST_INDEX,
    ROOT,
    SERVER_ENV,
    NewContext,
    run_server,
    watch_of,
)
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session", autouse=True)
def built_ui() -> Path:
    """The UI must have been built: a missing build fails the suite (it is the product)."""
    if not DIST_INDEX.is_file():
        pytest.fail(
            f"the web UI is not built: {DIST_INDEX.relative_to(ROOT)} is missing. "
            "Build it with scripts/build-web.sh (make test and make test-e2e do).",
            pytrace=False,
        )
    return DIST_INDEX


# -- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def e2e_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for the suite's servers (bundled models assembled once); each
    server has its own SQLite database next to it."""
    return tmp_path_factory.mktemp("ollm-e2e-home")


def _serve(home: Path, name: str, **env: str) -> Iterator[str]:
    database = f"sqlite+aiosqlite:///{home.parent / f'{name}.db'}"
    log = home.parent / f"{name}.log"
    with run_server(home, log, OLLM_DATABASE_URL=database, **SERVER_ENV, **env) as base_url:
        response = httpx.get(f"{base_url}/", headers={"Accept": "text/html"}, timeout=10)
        assert response.status_code == 200, f"GET / answered {response.status_code}"
        assert response.headers.get("content-type", "").startswith("text/html"), (
            f"GET / is not the web UI: {response.headers.get('content-type')}"
        )
        yield base_url


@pytest.fixture(scope="session")
def server(e2e_home: Path) -> Iterator[str]:
    """Auth off (loopback): everyone is the local user."""
    yield from _serve(e2e_home, "e2e-open")


@pytest.fixture(scope="session")
def auth_server(e2e_home: Path) -> Iterator[str]:
    """Auth on (``OLLM_AUTH=true``), sign-up open."""
    yield from _serve(e2e_home, "e2e-auth", OLLM_AUTH="true")


@pytest.fixture
def api(server: str) -> Iterator[httpx.Client]:
    """The REST API of the auth-off server, to set up and check state quickly."""
    with httpx.Client(base_url=server, timeout=120) as client:
        yield client


# -- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("OLLM_TEST_CHROMIUM") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no Chromium at {path}: run scripts/ensure-chromium.sh, or set "
            "OLLM_TEST_CHROMIUM to a Chromium executable",
            pytrace=False,
        )
    return path


# Module scope, not session: Playwright's sync API runs an asyncio loop in the main thread
# for as long as it is open, and every later test that calls asyncio.run() (the rest of the
# suite) would fail with "cannot be called from a running event loop".
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def new_context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[NewContext]:
    """``new_context(base_url=..., **options)``: a fresh browser context (its own cookies),
    desktop-sized unless told; every page it opens is watched (console, errors, requests)
    and, if the test fails, photographed into ``artifacts/failures/``. Closed after the test,
    which then fails if any page threw an uncaught error."""
    made: list[tuple[BrowserContext, list[Page]]] = []

    def make(**options: Any) -> BrowserContext:
        options.setdefault("viewport", DESKTOP)
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        pages: list[Page] = []

        def on_page(page: Page) -> None:
            watch_of(page)
            pages.append(page)

        context.on("page", on_page)
        made.append((context, pages))
        return context

    yield make
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    uncaught = [e for _, pages in made for page in pages for e in watch_of(page).page_errors]
    for n, (context, pages) in enumerate(made):
        if failed or uncaught:
            _keep_evidence(request.node.name, n, pages)
        context.close()
    if uncaught and not failed:
        # The app threw and nobody caught it: a bug even when the page still looked right.
        pytest.fail(f"uncaught errors in the page: {uncaught}", pytrace=False)


def _keep_evidence(test_name: str, n: int, pages: list[Page]) -> None:
    failures = ARTIFACTS / "failures"
    failures.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", test_name)
    for i, page in enumerate(pages):
        watch = watch_of(page)
        name = f"{stem}-{n}-{i}"
        if not page.is_closed():
            # Only a diagnostic: it must never hide the real failure.
            with contextlib.suppress(Exception):
                page.screenshot(path=failures / f"{name}.png", full_page=True)
        lines = [f"{m.type}: {m.text}" for m in watch.console] + watch.page_errors
        (failures / f"{name}.console.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def page(new_context: NewContext, server: str) -> Page:
    """A desktop-sized page in a fresh context on the auth-off server."""
    return new_context(base_url=server).new_page()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
