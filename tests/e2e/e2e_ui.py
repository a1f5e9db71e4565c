"""Helpers of the browser suite: REST shortcuts to set up state, and the page's parts by the
names in the UI contract (``/work/notes/ui-contract.md``): accessible names, a few classes.

Imported by ``conftest.py`` and the test modules (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, expect

ROOT = Path(__file__).resolve().parents[2]
DIST_INDEX = ROOT / "src" / "ollm" / "web" / "dist" / "index.html"
ARTIFACTS = Path(__file__).parent / "artifacts"
MODEL = "smollm2:135m"
PASSWORD = "correct horse battery"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Greedy and short: replies are deterministic enough to reason about, and quick.
GREEDY = {"temperature": 0, "max_tokens": 16}
# A prompt SmolLM2 keeps answering at temperature 0 (the integration suite uses it too).
LONG_PROMPT = "Repeat the word hello 500 times."
REPLY_TIMEOUT_MS = 90_000
SERVER_ENV = {"OLLM_MAX_RUNNING": "4", "OLLM_CONTEXT_PER_SEQUENCE": "2048", "OLLM_THREADS": "2"}

T = TypeVar("T")
# The ``new_context`` fixture: ``new_context(base_url=..., **options)`` -> a browser context.
NewContext = Callable[..., BrowserContext]


def _integration_conftest() -> ModuleType:
    """``tests/integration/conftest.py`` by file path, as the reliability suite loads it
    (pytest's default import mode does not put that folder on ``sys.path`` here)."""
    path = ROOT / "tests" / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ollm_e2e_integration_servers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_servers = _integration_conftest()
run_server = _servers.run_server
free_port = _servers.free_port


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


# -- REST shortcuts (auth off) ---------------------------------------------------------------


def create_chat(api: httpx.Client, title: str | None = None, **fields: Any) -> dict[str, Any]:
    """A new empty chat on ``smollm2:135m``, greedy and short unless ``params`` says else."""
    body: dict[str, Any] = {"model": MODEL, "params": GREEDY, **fields}
    if title is not None:
        body["title"] = title
    response = api.post("/api/v1/chats", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def import_chat(
    api: httpx.Client,
    title: str,
    messages: list[dict[str, str]],
    model: str = MODEL,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A chat with the given OpenAI-style messages, stored as they are (no model involved),
    greedy and short for whatever is generated in it later unless ``params`` says else."""
    response = api.post(
        "/api/v1/chats/import", json={"title": title, "model": model, "messages": messages}
    )
    assert response.status_code == 201, response.text
    chat = response.json()
    patched = api.patch(f"/api/v1/chats/{chat['id']}", json={"params": params or GREEDY})
    assert patched.status_code == 200, patched.text
    return chat


def ask(api: httpx.Client, chat_id: str, content: str) -> dict[str, Any]:
    """One turn through REST, not streamed."""
    response = api.post(
        f"/api/v1/chats/{chat_id}/messages", json={"content": content, "stream": False}
    )
    assert response.status_code == 200, response.text
    return response.json()


def get_chat(api: httpx.Client, chat_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/chats/{chat_id}")
    assert response.status_code == 200, response.text
    return response.json()


def browser_api(context: BrowserContext, method: str, path: str, **body: Any) -> Any:
    """A REST call with the context's login session (and its CSRF token, as the UI sends)."""
    csrf = next((c["value"] for c in context.cookies() if c["name"] == "csrf_token"), "")
    response = context.request.fetch(
        path,
        method=method,
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
        data=json.dumps(body) if body else None,
    )
    assert response.ok, f"{method} {path}: {response.status} {response.text()}"
    return response.json() if response.status != 204 else None


# -- what a page did ---------------------------------------------------------------------------


@dataclass
class Watch:
    """What a page did that a test may want to rule out: console messages, uncaught
    errors, and every request it made (by URL)."""

    console: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", lambda message: self.console.append(message))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("request", lambda request: self.requests.append(request.url))

    def console_errors(self) -> list[str]:
        return [m.text for m in self.console if m.type == "error"]

    def off_host_requests(self) -> list[str]:
        """Requests to anything but this machine (data:/blob: URLs never leave the page)."""
        return [url for url in self.requests if not is_local(url)]


_watches: weakref.WeakKeyDictionary[Page, Watch] = weakref.WeakKeyDictionary()


def watch_of(page: Page) -> Watch:
    """The page's :class:`Watch`, attached when the page opened (``new_context`` does it)
    or now."""
    if page not in _watches:
        _watches[page] = watch = Watch()
        watch.attach(page)
    return _watches[page]


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "chrome-error"):
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the page's parts (names from the contract) -------------------------------------------------


def message_box(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Message", exact=True)


def button(scope: Page | Locator, name: str) -> Locator:
    return scope.get_by_role("button", name=name, exact=True)


def articles(page: Page, who: str) -> Locator:
    """``who``: "User" or "Assistant"."""
    return page.get_by_role("article", name=f"{who} message", exact=True)


def content_of(article: Locator) -> Locator:
    return article.locator(".message-content")


def sidebar(page: Page) -> Locator:
    return page.get_by_role("navigation", name="Chats", exact=True)


def chat_link(page: Page, title: str) -> Locator:
    return sidebar(page).get_by_role("link", name=title, exact=True)


def wait_reply_done(page: Page, timeout: float = REPLY_TIMEOUT_MS) -> Locator:
    """The last assistant message once it is no longer streaming."""
    reply = articles(page, "Assistant").last
    expect(reply).to_have_attribute("aria-busy", "false", timeout=timeout)
    return reply


def open_chat(page: Page, chat_id: str) -> None:
    """Open the chat and wait until the page has loaded it (no request in flight)."""
    page.goto(f"/c/{chat_id}", wait_until="networkidle")
    expect(message_box(page)).to_be_visible()


def send(page: Page, text: str) -> None:
    """Type into the Message box and press Enter (how a person sends)."""
    box = message_box(page)
    box.fill(text)
    box.press("Enter")


def text_length(locator: Locator) -> int:
    return len(locator.text_content() or "")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
