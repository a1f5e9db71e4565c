"""Keyboard only: Tab reaches every control, dialogs and menus open with Enter and close
with Escape, and focus goes somewhere sensible."""

from __future__ import annotations

import httpx
import pytest
from e2e_ui import (
    articles,
    button,
    import_chat,
    message_box,
    sidebar,
    unique,
)
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

IS_FOCUSED = "(elements) => elements.map((el) => el === document.activeElement)"


def test_tab_reaches_every_control(page: Page, api: httpx.Client) -> None:
    title = unique("Keyboard")
    chat = import_chat(
        api,
        title,
        [
            {"role": "user", "content": "Hello?"},
            {"role": "assistant", "content": "Hello! How can I help?"},
        ],
    )
    page.goto(f"/c/{chat['id']}", wait_until="networkidle")
    expect(articles(page, "Assistant")).to_have_count(1)
    targets = {
        "New chat": button(page, "New chat"),
        "Search chats": page.get_by_role("searchbox", name="Search chats", exact=True),
        "the chat's link": sidebar(page).get_by_role("link", name=title, exact=True),
        "Chat options": button(page, "Chat options").first,
        "Model": page.get_by_role("combobox", name="Model", exact=True),
        "Chat settings": button(page, "Chat settings"),
        "Message": message_box(page),
        "Edit": button(articles(page, "User").first, "Edit"),
        "Regenerate": button(page, "Regenerate").last,
    }
    handles = [locator.element_handle() for locator in targets.values()]
    reached: set[str] = set()
    page.locator("body").focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        flags = page.evaluate(IS_FOCUSED, handles)
        reached |= {name for name, hit in zip(targets, flags, strict=True) if hit}
        if len(reached) == len(targets):
            break
    missing = sorted(set(targets) - reached)
    assert not missing, f"Tab never reaches: {missing}"


def test_dialog_and_menu_work_from_the_keyboard(page: Page, api: httpx.Client) -> None:
    title = unique("Keys")
    chat = import_chat(api, title, [{"role": "user", "content": "Hi"}])
    page.goto(f"/c/{chat['id']}", wait_until="networkidle")

    settings = button(page, "Chat settings")
    settings.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Chat settings")
    expect(dialog).to_be_visible()
    # Focus moves into the dialog (onto it or a control in it) once it has opened.
    page.wait_for_function(
        "(el) => el.contains(document.activeElement)", arg=dialog.element_handle()
    )
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Focus comes back once the dialog's closing has run: wait for it, as a person would.
    expect(settings).to_be_focused()

    row_options = (
        sidebar(page)
        .locator("*")
        .filter(has=page.get_by_role("link", name=title, exact=True))
        .filter(has=page.get_by_role("button", name="Chat options", exact=True))
        .last
    )
    options = button(row_options, "Chat options")
    options.focus()
    page.keyboard.press("Enter")
    items = page.get_by_role("menuitem")
    expect(items.first).to_be_visible()
    expect(items.first).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(items.nth(1)).to_be_focused()
    page.keyboard.press("Escape")
    expect(items).to_have_count(0)
    expect(options).to_be_focused()
