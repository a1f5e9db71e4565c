"""Model output is rendered inert: no script runs, nothing loads from elsewhere.

A 135M model will not write hostile markup on request, so the markup gets in two honest ways:
- stored: a chat imported through ``POST /api/v1/chats/import`` whose assistant message holds
  it (exactly what a saved reply would hold), opened in the browser;
- streamed: a real send through a small proxy in front of the real server that swaps the
  streamed reply's text for the markup, cut mid-tag into deltas a few milliseconds apart,
  so the UI's streaming renderer gets it as it would from a model. The server, the model
  and the stream are real; only the words differ. (Playwright's ``page.route`` cannot do
  this: it hands the page the whole response at once, which is never rendered mid-stream.)

Ollama-style raw completions are not used by the UI, so they are not tested here.
Every remote address is in TEST-NET-3 (203.0.113.0/24) and any request off this machine is
aborted as well as recorded: nothing leaves the box.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from e2e_proxy import SwappingProxy, serve_proxy
from e2e_ui import (
    NewContext,
    articles,
    content_of,
    create_chat,
    import_chat,
    is_local,
    open_chat,
    send,
    unique,
    wait_reply_done,
    watch_of,
)
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOSTILE = "\n\n".join(
    [
        "Here is the page you asked for.",
        "<img src=x onerror=\"window.__ollmPwned = 'img onerror'\">",
        "<script>window.__ollmPwned = 'script'</script>",
        "<a href=\"javascript:window.__ollmPwned='js link'\">click me</a>",
        "[markdown link](javascript:window.__ollmPwned='markdown link')",
        "<div onclick=\"window.__ollmPwned='onclick'\" "
        "onmouseover=\"window.__ollmPwned='hover'\">hover me</div>",
        '<iframe src="http://203.0.113.9/frame" '
        "srcdoc=\"<script>parent.__ollmPwned='iframe'</script>\"></iframe>",
        "<svg><script>window.__ollmPwned='svg script'</script>"
        '<animate onbegin="window.__ollmPwned=\'svg\'" attributeName="x" dur="1s"/></svg>',
        '<img src="http://203.0.113.7/pixel.png" alt="remote">',
        "![remote markdown image](http://203.0.113.8/tracker.png)",
        '<form action="http://203.0.113.10/steal">'
        "<button formaction=\"javascript:window.__ollmPwned='form'\">go</button></form>",
        '<object data="http://203.0.113.11/x.swf"></object>',
        "<details open ontoggle=\"window.__ollmPwned='ontoggle'\"><summary>open me</summary>"
        "</details>",
        "<style>body { background: url(http://203.0.113.12/bg.png) }</style>",
        "End of page.",
    ]
)

# Whatever is left in a message body that could run code or load something.
FIND_DANGER = """
(bodies) => {
  const found = [];
  for (const body of bodies) {
    const tags = 'script, iframe, frame, object, embed, form, style, link, meta, base';
    for (const el of body.querySelectorAll(tags)) {
      found.push('<' + el.tagName.toLowerCase() + '>');
    }
    for (const el of body.querySelectorAll('*')) {
      for (const attr of el.attributes) {
        const name = attr.name.toLowerCase();
        const value = attr.value.trim().toLowerCase();
        if (name.startsWith('on')) found.push(el.tagName.toLowerCase() + '[' + name + ']');
        if (['href', 'src', 'action', 'formaction', 'xlink:href', 'data'].includes(name)
            && value.replace(/[\\s\\u0000-\\u001f]/g, '').startsWith('javascript:')) {
          found.push(el.tagName.toLowerCase() + '[' + name + '=javascript:]');
        }
      }
    }
  }
  return found;
}
"""

# Elements in a message body that name a resource on another machine (loaded or not).
FIND_REMOTE = """
(bodies) => {
  const found = [];
  for (const body of bodies) {
    for (const el of body.querySelectorAll('[src], [srcset], [poster], [data], [background]')) {
      for (const name of ['src', 'srcset', 'poster', 'data', 'background']) {
        const value = el.getAttribute(name);
        if (value && /^\\s*(https?:)?\\/\\//i.test(value)
            && !/^\\s*(https?:)?\\/\\/(127\\.0\\.0\\.1|localhost)[:/]/i.test(value)) {
          found.push(el.tagName.toLowerCase() + '[' + name + '=' + value + ']');
        }
      }
    }
  }
  return found;
}
"""

# Console messages of a CSP refusal that means code got as far as trying to run.
EXECUTION_REFUSED = re.compile(
    r"Refused to (execute|run|evaluate|frame|load the script)|inline event handler|"
    r"javascript: URL|unsafe-eval|unsafe-inline",
    re.I,
)


def block_the_outside(page: Page) -> None:
    page.context.route(lambda url: not is_local(url), lambda route: route.abort())


def provoke(page: Page) -> None:
    """Do what a curious person would: hover and click everything in the replies."""
    for text in ("click me", "markdown link", "hover me", "go", "open me"):
        target = articles(page, "Assistant").get_by_text(text, exact=True)
        if target.count():
            target.first.hover()
            target.first.click(timeout=2_000, no_wait_after=True)
    page.wait_for_timeout(300)


def assert_inert(page: Page) -> None:
    watch = watch_of(page)
    pwned = page.evaluate("() => window.__ollmPwned ?? null")
    assert pwned is None, f"model output ran code: {pwned}"
    bodies = articles(page, "Assistant").locator(".message-content")
    danger = bodies.evaluate_all(FIND_DANGER)
    assert danger == [], f"dangerous markup survived sanitising: {danger}"
    off_host = watch.off_host_requests()
    assert off_host == [], f"the page asked other machines for: {off_host}"
    refused = [t for t in watch.console_errors() if EXECUTION_REFUSED.search(t)]
    assert refused == [], f"hostile code reached the CSP (the sanitiser let it through): {refused}"
    assert watch.page_errors == [], watch.page_errors


def test_a_stored_hostile_reply_renders_inert(page: Page, api: httpx.Client) -> None:
    watch_of(page)
    block_the_outside(page)
    chat = import_chat(
        api,
        unique("Hostile stored"),
        [
            {"role": "user", "content": "Show me a web page."},
            {"role": "assistant", "content": HOSTILE},
        ],
    )
    response = page.goto(f"/c/{chat['id']}")
    assert response is not None
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp, csp
    reply = articles(page, "Assistant").last
    # The harmless parts still render.
    expect(content_of(reply)).to_contain_text("Here is the page you asked for.")
    expect(content_of(reply)).to_contain_text("End of page.")
    expect(content_of(reply)).to_contain_text("markdown link")
    provoke(page)
    assert page.url.endswith(f"/c/{chat['id']}"), f"a click in the reply navigated: {page.url}"
    assert_inert(page)


def test_a_stored_reply_cannot_name_remote_content(page: Page, api: httpx.Client) -> None:
    """Beyond the CSP: the sanitiser itself drops remote images and the like."""
    block_the_outside(page)
    chat = import_chat(
        api,
        unique("Remote stored"),
        [
            {"role": "user", "content": "Show me a web page."},
            {"role": "assistant", "content": HOSTILE},
        ],
    )
    open_chat(page, chat["id"])
    expect(content_of(articles(page, "Assistant").last)).to_contain_text("End of page.")
    remote = articles(page, "Assistant").locator(".message-content").evaluate_all(FIND_REMOTE)
    assert remote == [], f"model output still names remote resources: {remote}"


@pytest.fixture
def hostile_proxy(server: str) -> Iterator[str]:
    with serve_proxy(SwappingProxy(server, HOSTILE)) as url:
        yield url


def test_a_streamed_hostile_reply_renders_inert(
    new_context: NewContext, hostile_proxy: str, api: httpx.Client
) -> None:
    page = new_context(base_url=hostile_proxy).new_page()
    block_the_outside(page)
    chat = create_chat(api, unique("Hostile streamed"))
    open_chat(page, chat["id"])
    # Checked on every frame while the markup streams in, not only at the end (the checker
    # is pasted in: the page's CSP rightly forbids building functions from strings).
    page.evaluate(
        "() => { const check = "
        + FIND_DANGER.strip()
        + """;
          window.__ollmDanger = [];
          window.__ollmStreamedHostile = 0;
          const step = () => {
            const replies = document.querySelectorAll('article[aria-label="Assistant message"]');
            const bodies = [...replies].map((r) => r.querySelector('.message-content'))
              .filter(Boolean);
            for (const d of check(bodies)) {
              if (!window.__ollmDanger.includes(d)) window.__ollmDanger.push(d);
            }
            const last = replies[replies.length - 1];
            if (last && last.getAttribute('aria-busy') === 'true'
                && (last.textContent || '').includes('Here is the page')) {
              window.__ollmStreamedHostile += 1;
            }
            requestAnimationFrame(step);
          };
          requestAnimationFrame(step);
        }"""
    )
    send(page, "Show me a web page.")
    reply = wait_reply_done(page)
    expect(content_of(reply)).to_contain_text("End of page.")
    provoke(page)
    frames = page.evaluate("() => window.__ollmStreamedHostile")
    assert frames > 2, "the hostile text hardly showed while streaming: the test proved little"
    danger_while_streaming = page.evaluate("() => window.__ollmDanger")
    assert danger_while_streaming == [], danger_while_streaming
    assert_inert(page)
