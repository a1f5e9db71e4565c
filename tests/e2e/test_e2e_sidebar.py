"""The sidebar's chat list: rename, pin, search, delete (after confirming), export.

The chats are imported through the REST API (no model needed); the test drives the page.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from e2e_ui import (
    articles,
    button,
    chat_link,
    get_chat,
    import_chat,
    sidebar,
    unique,
    wait_for,
)
from playwright.sync_api import Locator, Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

GROUPS = ["Pinned", "Today", "Yesterday", "Previous 7 days", "Older"]

# The name of the last group heading before the link, in document order.
GROUP_OF = """
(link, groups) => {
  const nav = link.closest('nav');
  if (!nav) return null;  // caught mid re-render, detached: ask again
  const walker = document.createTreeWalker(nav, NodeFilter.SHOW_TEXT);
  let current = null;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (link.contains(node)) return current;
    const text = node.textContent.trim();
    if (groups.includes(text) && !node.parentElement.closest('a')) current = text;
  }
  return null;
}
"""


def group_of(link: Locator) -> str | None:
    return link.evaluate(GROUP_OF, GROUPS)


def seed(api: httpx.Client, title: str, words: str = "tomatoes") -> dict:
    return import_chat(
        api,
        title,
        [
            {"role": "user", "content": f"How do I grow {words}?"},
            {"role": "assistant", "content": f"Plant the {words} in full sun and water often."},
        ],
    )


def options(page: Page, title: str) -> Locator:
    """The "Chat options" button of the chat titled ``title``: the one in the innermost
    element holding both that chat's link and an options button."""
    link = page.get_by_role("link", name=title, exact=True)
    row = (
        sidebar(page)
        .locator("*")
        .filter(has=link)
        .filter(has=page.get_by_role("button", name="Chat options", exact=True))
        .last
    )
    row.hover()
    return button(row, "Chat options")


def choose(page: Page, title: str, item: str) -> None:
    options(page, title).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def test_rename(page: Page, api: httpx.Client) -> None:
    old, new = unique("Garden"), unique("Vegetable garden")
    chat = seed(api, old)
    page.goto("/")
    expect(chat_link(page, old)).to_be_visible()

    choose(page, old, "Rename")
    title_box = page.get_by_role("textbox", name="Chat title", exact=True)
    expect(title_box).to_be_visible()
    title_box.fill(new)
    title_box.press("Enter")
    expect(chat_link(page, new)).to_be_visible()
    expect(chat_link(page, old)).to_have_count(0)
    assert get_chat(api, chat["id"])["title"] == new
    page.reload()
    expect(chat_link(page, new)).to_be_visible()


def test_pin_moves_a_chat_under_pinned(page: Page, api: httpx.Client) -> None:
    title = unique("Pin me")
    chat = seed(api, title)
    page.goto("/")
    link = chat_link(page, title)
    expect(link).to_be_visible()
    assert group_of(link) == "Today"

    choose(page, title, "Pin")
    assert wait_for(lambda: group_of(link) == "Pinned", timeout=10), group_of(link)
    assert get_chat(api, chat["id"])["pinned"] is True

    choose(page, title, "Unpin")
    assert wait_for(lambda: group_of(link) == "Today", timeout=10), group_of(link)
    assert get_chat(api, chat["id"])["pinned"] is False


def test_search_filters_the_list(page: Page, api: httpx.Client) -> None:
    marker = unique("zebra").split()[1]
    match, other = unique(f"Stripes {marker}"), unique("Spots")
    seed(api, match)
    seed(api, other)
    page.goto("/")
    expect(chat_link(page, match)).to_be_visible()
    expect(chat_link(page, other)).to_be_visible()

    search = page.get_by_role("searchbox", name="Search chats", exact=True)
    search.fill(marker)
    expect(chat_link(page, other)).to_have_count(0)
    expect(chat_link(page, match)).to_be_visible()
    expect(sidebar(page).get_by_role("link")).to_have_count(1)

    search.fill("")
    expect(chat_link(page, other)).to_be_visible()
    expect(chat_link(page, match)).to_be_visible()


def test_delete_asks_first(page: Page, api: httpx.Client) -> None:
    title = unique("Delete me")
    chat = seed(api, title)
    page.goto(f"/c/{chat['id']}")
    expect(articles(page, "User")).to_have_count(1)

    choose(page, title, "Delete")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    button(dialog, "Cancel").click()
    expect(dialog).to_be_hidden()
    expect(chat_link(page, title)).to_be_visible()
    assert api.get(f"/api/v1/chats/{chat['id']}").status_code == 200

    choose(page, title, "Delete")
    dialog = page.get_by_role("dialog")
    button(dialog, "Delete").click()
    expect(dialog).to_be_hidden()
    expect(chat_link(page, title)).to_have_count(0)
    # The open chat was the one deleted: its messages are gone from the page too.
    expect(articles(page, "User")).to_have_count(0)
    assert api.get(f"/api/v1/chats/{chat['id']}").status_code == 404
    page.reload()
    expect(sidebar(page)).to_be_visible()
    expect(chat_link(page, title)).to_have_count(0)


def test_export_downloads_the_messages(page: Page, api: httpx.Client) -> None:
    title = unique("Export me")
    chat = seed(api, title, words="beans")
    page.goto("/")
    expect(chat_link(page, title)).to_be_visible()

    with page.expect_download() as info:
        choose(page, title, "Export JSON")
    data = json.loads(Path(info.value.path()).read_text())
    assert data["chat"]["title"] == title
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "How do I grow beans?"),
        ("assistant", "Plant the beans in full sun and water often."),
    ]
    assert info.value.suggested_filename.endswith(".json")

    with page.expect_download() as info:
        choose(page, title, "Export Markdown")
    text = Path(info.value.path()).read_text()
    assert "How do I grow beans?" in text and "Plant the beans in full sun" in text
    assert info.value.suggested_filename.endswith(".md")
    assert get_chat(api, chat["id"])["title"] == title
