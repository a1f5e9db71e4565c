"""Auth on (``OLLM_AUTH=true``): the login page, signing up, logging out and back in, and
one person never seeing another's chats."""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_ui import (
    GREEDY,
    MODEL,
    PASSWORD,
    NewContext,
    articles,
    browser_api,
    button,
    chat_link,
    content_of,
    message_box,
    open_chat,
    send,
    sidebar,
    unique,
    wait_reply_done,
)
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def username_box(page: Page) -> Any:
    return page.get_by_role("textbox", name="Username", exact=True)


def password_box(page: Page) -> Any:
    # An <input type="password"> has no ARIA role (not "textbox"): found by its label.
    return page.get_by_label("Password", exact=True)


def create_account_control(page: Page) -> Any:
    return page.get_by_role("button", name="Create account", exact=True).or_(
        page.get_by_role("link", name="Create account", exact=True)
    )


def sign_up(page: Page, username: str) -> None:
    page.goto("/")
    expect(username_box(page)).to_be_visible()
    create_account_control(page).click()
    username_box(page).fill(username)
    password_box(page).fill(PASSWORD)
    button(page, "Sign up").click()
    expect(message_box(page)).to_be_visible()


def log_in(page: Page, username: str) -> None:
    expect(username_box(page)).to_be_visible()
    username_box(page).fill(username)
    password_box(page).fill(PASSWORD)
    button(page, "Log in").click()
    expect(message_box(page)).to_be_visible()


def chat_with_a_reply(page: Page, title: str, question: str) -> str:
    """A greedy, short chat made through the API with the page's session; the question is
    sent in the browser. Its id."""
    chat = browser_api(
        page.context, "POST", "/api/v1/chats", title=title, model=MODEL, params=GREEDY
    )
    open_chat(page, chat["id"])
    send(page, question)
    wait_reply_done(page)
    expect(articles(page, "User")).to_have_count(1)
    return chat["id"]


def test_sign_up_chat_log_out_and_back_in(new_context: NewContext, auth_server: str) -> None:
    page = new_context(base_url=auth_server).new_page()
    page.goto("/")
    # Not signed in: the login page, and no chat.
    expect(username_box(page)).to_be_visible()
    expect(password_box(page)).to_have_attribute("type", "password")
    expect(button(page, "Log in")).to_be_visible()
    expect(message_box(page)).to_have_count(0)

    name = unique("alice").replace(" ", "-")
    sign_up(page, name)
    title = unique("Alice's chat")
    question = "What is two plus two?"
    chat_id = chat_with_a_reply(page, title, question)

    button(page, "Log out").click()
    expect(username_box(page)).to_be_visible()
    expect(message_box(page)).to_have_count(0)
    # The session is really gone: the API refuses this browser now.
    assert page.request.get("/api/v1/chats").status == 401

    log_in(page, name)
    link = chat_link(page, title)
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(rf"/c/{re.escape(chat_id)}$"))
    expect(articles(page, "User")).to_have_count(1)
    expect(content_of(articles(page, "User").first)).to_contain_text(question)
    expect(articles(page, "Assistant")).to_have_count(1)


def test_a_second_user_sees_none_of_the_first_users_chats(
    new_context: NewContext, auth_server: str
) -> None:
    first = new_context(base_url=auth_server).new_page()
    sign_up(first, unique("bob").replace(" ", "-"))
    title = unique("Bob's secret plans")
    secret = f"My locker code is {unique('code')}."
    chat_id = chat_with_a_reply(first, title, secret)
    expect(chat_link(first, title)).to_be_visible()

    second = new_context(base_url=auth_server).new_page()
    sign_up(second, unique("carol").replace(" ", "-"))
    expect(sidebar(second)).to_be_visible()
    expect(chat_link(second, title)).to_have_count(0)
    expect(sidebar(second).get_by_role("link")).to_have_count(0)

    second.goto(f"/c/{chat_id}")
    alert = second.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(re.compile(r"not found|no longer exists|does not exist", re.I))
    expect(articles(second, "User")).to_have_count(0)
    expect(articles(second, "Assistant")).to_have_count(0)
    expect(second.get_by_text(secret)).to_have_count(0)
    expect(sidebar(second).get_by_role("link")).to_have_count(0)
