"""Chatting in the browser with the real model: streaming, history, the settings dialog,
stopping a reply. Assertions are about what the page shows and what the server saved, never
about the model's prose."""

from __future__ import annotations

import contextlib
import itertools
import re
import time

import httpx
import pytest
from e2e_ui import (
    ARTIFACTS,
    LONG_PROMPT,
    MODEL,
    articles,
    button,
    chat_link,
    content_of,
    create_chat,
    get_chat,
    message_box,
    open_chat,
    send,
    sidebar,
    text_length,
    unique,
    wait_for,
    wait_reply_done,
)
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Route, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Installed before the send: samples the newest reply's text length on every animation
# frame until it is no longer busy. ``window.__ollmSampling`` resolves to what it saw.
START_SAMPLING = """
(before) => {
  window.__ollmSampling = new Promise((resolve) => {
    const lengths = [];
    let frames = 0;
    let sawBusy = false;
    const started = performance.now();
    const step = () => {
      frames += 1;
      const all = document.querySelectorAll('article[aria-label="Assistant message"]');
      if (all.length > before) {
        const reply = all[all.length - 1];
        const body = reply.querySelector('.message-content');
        lengths.push(body ? body.textContent.length : 0);
        const busy = reply.getAttribute('aria-busy');
        if (busy === 'true') sawBusy = true;
        if (busy === 'false' && sawBusy) return resolve({lengths, frames, sawBusy, done: true});
      }
      if (performance.now() - started > 60000) {
        return resolve({lengths, frames, sawBusy, done: false});
      }
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
}
"""


def test_a_reply_streams_in_over_several_frames(page: Page, api: httpx.Client) -> None:
    """Chat settings set greedy decoding; Shift+Enter is a newline; Enter sends; the reply
    grows frame by frame (not one final paint) and ends with its stats."""
    chat = create_chat(api, unique("Streaming"), params={})
    open_chat(page, chat["id"])

    # Greedy, short replies, set the way a person would.
    button(page, "Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Temperature", exact=True).fill("0")
    dialog.get_by_label("Max tokens", exact=True).fill("32")
    button(dialog, "Save").click()
    expect(dialog).to_be_hidden()
    params = get_chat(api, chat["id"])["params"]
    assert params["temperature"] == 0 and params["max_tokens"] == 32, params

    box = message_box(page)
    box.click()
    box.press_sequentially("Write a short poem")
    box.press("Shift+Enter")
    box.press_sequentially("about the sea.")
    expect(box).to_have_value("Write a short poem\nabout the sea.")
    expect(articles(page, "User")).to_have_count(0)  # Shift+Enter did not send

    page.evaluate(START_SAMPLING, articles(page, "Assistant").count())
    box.press("Enter")
    seen = page.evaluate("() => window.__ollmSampling")

    assert seen["done"], f"the reply never finished: {seen}"
    lengths = seen["lengths"]
    changes = [n for i, n in enumerate(lengths) if n and (i == 0 or n != lengths[i - 1])]
    increases = sum(1 for a, b in itertools.pairwise(changes) if b > a)
    assert increases >= 2, (
        f"the reply did not grow over several frames (streaming): lengths per frame {lengths}"
    )
    assert changes[0] < max(changes), changes

    user = articles(page, "User")
    expect(user).to_have_count(1)
    expect(content_of(user.first)).to_contain_text("Write a short poem")
    expect(content_of(user.first)).to_contain_text("about the sea.")
    expect(box).to_have_value("")
    reply = wait_reply_done(page)
    expect(content_of(reply)).not_to_be_empty()
    stats = page.locator(".reply-stats").last
    expect(stats).to_have_text(re.compile(r"\d+ tokens?.*\d+(\.\d+)? tok/s"))
    saved = get_chat(api, chat["id"])["messages"]
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[0]["content"] == "Write a short poem\nabout the sea."
    assert saved[1]["status"] == "complete" and saved[1]["completion_tokens"] <= 32
    assert f"{saved[1]['completion_tokens']} token" in (stats.text_content() or "")
    ARTIFACTS.joinpath("screens").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "screens" / "chat-live-reply-desktop-light.png")


def test_enter_before_the_chat_has_loaded_stays_in_that_chat(page: Page, api: httpx.Client) -> None:
    """A quick typist on a slow link: the chat in the address bar has not arrived yet when
    Enter is pressed. The message must go to that chat (or wait, text kept), never to a
    new one."""
    chat = create_chat(api, unique("Quick typist"))
    before = api.get("/api/v1/chats", params={"limit": 200}).json()["total"]
    held: list[Route] = []

    def hold(route: Route) -> None:
        if route.request.method == "GET":
            held.append(route)  # answered later, below
        else:
            route.fallback()

    pattern = re.compile(rf"/api/v1/chats/{re.escape(chat['id'])}$")
    page.route(pattern, hold)
    page.goto(f"/c/{chat['id']}")
    expect(message_box(page)).to_be_visible()
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never asked for the chat"
    send(page, "Hello, quick question.")
    page.wait_for_timeout(500)
    for route in held:
        route.continue_()
    page.unroute(pattern)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)

    after = api.get("/api/v1/chats", params={"limit": 200}).json()["total"]
    assert after == before, "Enter before the chat loaded created another chat"
    assert page.url.endswith(f"/c/{chat['id']}"), page.url
    saved = get_chat(api, chat["id"])["messages"]
    if not saved:  # the page waited: the text must still be there
        expect(message_box(page)).to_have_value("Hello, quick question.")
    else:
        assert saved[0]["content"] == "Hello, quick question."


def test_a_new_chat_is_in_the_sidebar_after_a_reload(page: Page, api: httpx.Client) -> None:
    """From the empty page: pick the model, send; after a reload the chat is in the sidebar
    and opening it shows both turns."""
    page.goto("/", wait_until="networkidle")
    page.get_by_role("combobox", name="Model").select_option(MODEL)
    question = f"Name three colours. {unique('ref')}"
    send(page, question)
    reply = articles(page, "Assistant").last
    expect(content_of(reply)).not_to_be_empty(timeout=30_000)
    # A new chat has the server's default length (up to the context): no need to wait.
    try:
        expect(reply).to_have_attribute("aria-busy", "false", timeout=10_000)
    except AssertionError:
        with contextlib.suppress(PlaywrightError):  # it may have ended meanwhile
            button(page, "Stop").click(timeout=2_000)
        expect(reply).to_have_attribute("aria-busy", "false")
    expect(page).to_have_url(re.compile(r"/c/[^/]+$"))
    chat_id = page.url.rsplit("/c/", 1)[1]
    saved = get_chat(api, chat_id)
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
    assert saved["messages"][0]["content"] == question

    page.reload()
    expect(articles(page, "User")).to_have_count(1)
    expect(articles(page, "Assistant")).to_have_count(1)

    page.goto("/")
    expect(articles(page, "User")).to_have_count(0)
    link = chat_link(page, saved["title"])
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(re.compile(rf"/c/{re.escape(chat_id)}$"))
    expect(articles(page, "User")).to_have_count(1)
    expect(content_of(articles(page, "User").first)).to_contain_text(question)
    expect(articles(page, "Assistant")).to_have_count(1)
    expect(content_of(articles(page, "Assistant").first)).not_to_be_empty()
    expect(sidebar(page)).to_be_visible()


def test_stop_ends_a_long_reply(page: Page, api: httpx.Client) -> None:
    """Stop mid-way: the reply stops growing, Send works again, the server agrees."""
    chat = create_chat(api, unique("Stopping"), params={"temperature": 0, "max_tokens": 1000})
    open_chat(page, chat["id"])
    send(page, LONG_PROMPT)
    reply = articles(page, "Assistant").last
    expect(reply).to_have_attribute("aria-busy", "true")
    expect(content_of(reply)).to_have_text(re.compile(r"\S.{40,}", re.S), timeout=30_000)

    button(page, "Stop").click()
    expect(reply).to_have_attribute("aria-busy", "false", timeout=10_000)
    expect(button(page, "Stop")).to_be_hidden()
    stopped_at = text_length(content_of(reply))
    time.sleep(1.0)
    assert text_length(content_of(reply)) == stopped_at, "the reply kept growing after Stop"

    saved = get_chat(api, chat["id"])
    assert not saved["generating"]
    last = saved["messages"][-1]
    assert last["role"] == "assistant" and last["status"] == "interrupted", last
    assert 0 < (last["completion_tokens"] or 0) < 1000, last

    box = message_box(page)
    box.fill("Thanks.")
    expect(button(page, "Send")).to_be_enabled()
    box.fill("")


def test_the_model_picker_lists_the_models_and_sets_the_chats(
    page: Page, api: httpx.Client
) -> None:
    chat = create_chat(api, unique("Model picker"))
    open_chat(page, chat["id"])
    picker = page.get_by_role("combobox", name="Model", exact=True)
    expect(picker).to_have_value(MODEL)
    installed = sorted(m["id"] for m in api.get("/v1/models").json()["data"])
    offered = sorted(picker.locator("option").evaluate_all("(os) => os.map((o) => o.value)"))
    assert offered == installed, (offered, installed)

    other = next(name for name in installed if name != MODEL)
    picker.select_option(other)
    assert wait_for(lambda: get_chat(api, chat["id"])["model"] == other, timeout=10)
    page.reload()
    expect(picker).to_have_value(other)
    picker.select_option(MODEL)
    assert wait_for(lambda: get_chat(api, chat["id"])["model"] == MODEL, timeout=10)
