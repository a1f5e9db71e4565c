"""Branches in the browser: regenerate a reply and move between the versions; edit an
earlier question, which starts a branch of its own."""

from __future__ import annotations

import re

import httpx
import pytest
from e2e_ui import (
    articles,
    button,
    content_of,
    get_chat,
    import_chat,
    open_chat,
    unique,
    wait_reply_done,
)
from playwright.sync_api import Locator, Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def version(n: int, of: int) -> re.Pattern[str]:
    """The branch indicator's text, "2/3" (spaces tolerated)."""
    return re.compile(rf"^\s*{n}\s*/\s*{of}\s*$")


def indicator(article: Locator) -> Locator:
    return article.locator(".branch-indicator")


def test_regenerate_then_move_between_versions(page: Page, api: httpx.Client) -> None:
    # The first version is stored (no model needed), the second one the model's.
    chat = import_chat(
        api,
        unique("Regenerate"),
        [
            {"role": "user", "content": "Tell me one fact about cats."},
            {"role": "assistant", "content": "Cats sleep for about two thirds of the day."},
        ],
    )
    open_chat(page, chat["id"])
    reply = articles(page, "Assistant").last
    expect(content_of(reply)).to_have_text("Cats sleep for about two thirds of the day.")
    expect(indicator(reply)).to_have_count(0)  # one version: no switcher
    first = content_of(reply).inner_text()

    button(page, "Regenerate").last.click()
    reply = articles(page, "Assistant").last
    expect(indicator(reply)).to_have_text(version(2, 2), timeout=90_000)
    reply = wait_reply_done(page)
    expect(articles(page, "Assistant")).to_have_count(1)
    second = content_of(reply).inner_text()
    assert second.strip()

    button(reply, "Previous version").click()
    expect(indicator(reply)).to_have_text(version(1, 2))
    expect(content_of(reply)).to_have_text(first)
    button(reply, "Next version").click()
    expect(indicator(reply)).to_have_text(version(2, 2))
    expect(content_of(reply)).to_have_text(second)

    saved = get_chat(api, chat["id"])["messages"]
    assert len(saved[-1]["sibling_ids"]) == 2, saved[-1]


def test_editing_an_earlier_question_starts_a_branch(page: Page, api: httpx.Client) -> None:
    chat = import_chat(
        api,
        unique("Edit"),
        [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And the capital of Italy?"},
            {"role": "assistant", "content": "Rome."},
        ],
    )
    open_chat(page, chat["id"])
    users = articles(page, "User")
    expect(users).to_have_count(2)

    first = users.first
    first.hover()
    button(first, "Edit").click()
    edit_box = page.get_by_role("textbox", name="Edit message", exact=True)
    expect(edit_box).to_have_value("What is the capital of France?")
    edit_box.fill("What is the capital of Spain?")
    button(page, "Save & submit").click()

    # The new branch: the edited question and a fresh reply; the old turns are hidden.
    expect(users).to_have_count(1)
    expect(indicator(users.first)).to_have_text(version(2, 2), timeout=90_000)
    wait_reply_done(page)
    expect(articles(page, "Assistant")).to_have_count(1)
    expect(content_of(users.first)).to_contain_text("Spain")

    button(users.first, "Previous version").click()
    expect(indicator(users.first)).to_have_text(version(1, 2))
    expect(users).to_have_count(2)
    expect(content_of(users.first)).to_contain_text("France")
    expect(content_of(users.nth(1))).to_contain_text("Italy")
    expect(articles(page, "Assistant")).to_have_count(2)

    button(users.first, "Next version").click()
    expect(indicator(users.first)).to_have_text(version(2, 2))
    expect(users).to_have_count(1)


def test_edit_can_be_cancelled(page: Page, api: httpx.Client) -> None:
    chat = import_chat(
        api,
        unique("Cancel edit"),
        [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello!"}],
    )
    open_chat(page, chat["id"])
    user = articles(page, "User").first
    user.hover()
    button(user, "Edit").click()
    edit_box = page.get_by_role("textbox", name="Edit message", exact=True)
    edit_box.fill("Something else entirely")
    button(page, "Cancel").click()
    expect(edit_box).to_be_hidden()
    expect(content_of(user)).to_contain_text("Say hello.")
    expect(indicator(user)).to_have_count(0)
    assert len(get_chat(api, chat["id"])["messages"]) == 2
