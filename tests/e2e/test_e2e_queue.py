"""A busy server, seen from the browser: a place in the queue while waiting for the one slot,
and a clear "busy" message with Retry when even the waiting room is full."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_ui import (
    LONG_PROMPT,
    SERVER_ENV,
    NewContext,
    articles,
    button,
    content_of,
    create_chat,
    message_box,
    open_chat,
    run_server,
    send,
    unique,
    wait_for,
    wait_reply_done,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def busy_server(e2e_home: Path) -> Iterator[str]:
    """One slot and one place to wait."""
    env = {**SERVER_ENV, "OLLM_MAX_RUNNING": "1", "OLLM_MAX_WAITING": "1"}
    database = f"sqlite+aiosqlite:///{e2e_home.parent / 'e2e-busy.db'}"
    log = e2e_home.parent / "e2e-busy.log"
    with run_server(e2e_home, log, OLLM_DATABASE_URL=database, **env) as base_url:
        yield base_url


class Occupier:
    """A long reply streamed through the REST API in a thread: it holds the only slot
    until stopped."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.chat = create_chat(
            api, unique("Occupier"), params={"temperature": 0, "max_tokens": 1000}
        )
        self.writing = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url = f"/api/v1/chats/{self.chat['id']}/messages"
        with self.api.stream("POST", url, json={"content": LONG_PROMPT}) as response:
            for line in response.iter_lines():
                if '"type":"delta"' in line.replace(" ", ""):
                    self.writing.set()

    def __enter__(self) -> Occupier:
        self.thread.start()
        assert self.writing.wait(60), "the long reply never started"
        return self

    def stop(self) -> None:
        self.api.post(f"/api/v1/chats/{self.chat['id']}/stop")
        self.thread.join(30)

    def __exit__(self, *_: object) -> None:
        self.stop()


def test_waiting_shows_the_place_in_the_queue_and_a_full_server_says_busy(
    new_context: NewContext, busy_server: str
) -> None:
    with httpx.Client(base_url=busy_server, timeout=120) as api:
        waiting = new_context(base_url=busy_server).new_page()
        refused = new_context(base_url=busy_server).new_page()
        second = create_chat(api, unique("Waiting"), params={"temperature": 0, "max_tokens": 16})
        third = create_chat(api, unique("Refused"), params={"temperature": 0, "max_tokens": 16})
        open_chat(waiting, second["id"])
        open_chat(refused, third["id"])

        with Occupier(api) as occupier:
            send(waiting, "Say hi.")
            status = waiting.get_by_role("status").filter(has_text=re.compile(r"in queue"))
            expect(status).to_have_text(re.compile(r"Position 1 in queue"), timeout=30_000)

            # The one slot is taken and the one waiting place too: busy.
            send(refused, "Are you free?")
            alert = refused.get_by_role("alert")
            expect(alert).to_be_visible(timeout=30_000)
            expect(alert).to_contain_text(re.compile(r"busy|too many|try again", re.I))
            assert "{" not in alert.inner_text()
            expect(button(alert, "Retry")).to_be_visible()
            expect(message_box(refused)).to_have_value("Are you free?")

            occupier.stop()
            assert wait_for(
                lambda: not api.get(f"/api/v1/chats/{occupier.chat['id']}").json()["generating"]
            )

        # The slot is free: the waiting reply runs, and Retry gets the refused one through.
        reply = wait_reply_done(waiting)
        expect(status).to_have_count(0)
        expect(content_of(reply)).not_to_be_empty()

        button(refused.get_by_role("alert"), "Retry").click()
        reply = wait_reply_done(refused)
        expect(refused.get_by_role("alert")).to_have_count(0)
        expect(articles(refused, "User")).to_have_count(1)
        expect(content_of(reply)).not_to_be_empty()
