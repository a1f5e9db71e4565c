"""Failures the person sees: a human message, a Retry button, and nothing typed is lost."""

from __future__ import annotations

import re

import httpx
import pytest
from e2e_ui import (
    articles,
    button,
    create_chat,
    message_box,
    open_chat,
    send,
    unique,
    wait_reply_done,
)
from playwright.sync_api import Page, Route, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def assert_human(alert_text: str) -> None:
    """A sentence for a person, not a status code or a JSON body."""
    assert re.search(r"[A-Za-z]{3,}.*\s.*[A-Za-z]{3,}", alert_text), alert_text
    assert "{" not in alert_text and "Traceback" not in alert_text, alert_text


def test_a_missing_model_is_explained_and_the_text_kept(page: Page, api: httpx.Client) -> None:
    chat = create_chat(api, unique("Missing model"), model="nope:1b")
    open_chat(page, chat["id"])
    send(page, "Hello there")

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert).to_contain_text(re.compile("model", re.I))
    assert_human(alert.inner_text())
    expect(button(alert, "Retry")).to_be_visible()
    expect(message_box(page)).to_have_value("Hello there")

    # Retrying fails the same way, and still loses nothing.
    button(alert, "Retry").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(message_box(page)).to_have_value("Hello there")


def test_a_lost_connection_can_be_retried(page: Page, api: httpx.Client) -> None:
    """The send's request fails at the network (the browser's own error, no server
    involved); Retry once the network is back gets the reply."""
    chat = create_chat(api, unique("Offline"))
    open_chat(page, chat["id"])
    pattern = re.compile(r"/api/v1/chats/[^/]+/messages$")

    def offline(route: Route) -> None:
        if route.request.method == "POST":
            route.abort("internetdisconnected")
        else:
            route.fallback()

    page.route(pattern, offline)
    send(page, "Are you there?")
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=30_000)
    assert_human(alert.inner_text())
    expect(message_box(page)).to_have_value("Are you there?")

    page.unroute(pattern)
    button(alert, "Retry").click()
    reply = wait_reply_done(page)
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(articles(page, "User")).to_have_count(1)
    expect(reply.locator(".message-content")).not_to_be_empty()


def test_a_message_too_long_for_the_context_is_explained(page: Page, api: httpx.Client) -> None:
    chat = create_chat(api, unique("Too long"))
    open_chat(page, chat["id"])
    long_text = "word " * 3000  # ~3000 tokens; the server's context is 2048
    send(page, long_text)

    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert).to_contain_text(re.compile(r"too long|context", re.I))
    assert_human(alert.inner_text())
    expect(button(alert, "Retry")).to_be_visible()
    expect(message_box(page)).to_have_value(long_text)
    expect(articles(page, "Assistant")).to_have_count(0)
