"""Replies are rendered as Markdown while they stream (headings, lists, tables, highlighted
code), and a code block's Copy button copies its code.

The model cannot be asked for an exact text, so the reply's words come through
:class:`e2e_proxy.SwappingProxy` (real server, real model, real stream timing; only the
words swapped). See that module.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2e_proxy import SwappingProxy, serve_proxy
from e2e_ui import (
    NewContext,
    articles,
    content_of,
    create_chat,
    open_chat,
    send,
    unique,
    wait_reply_done,
)
from playwright.sync_api import expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CODE = "def is_ideal(ph: float) -> bool:\n    return 6.2 <= ph <= 6.8\n\nprint(is_ideal(6.5))"

MARKDOWN = f"""## Growing tomatoes

Tomatoes want **sun** and steady water:

- Plant after the last frost.
- Water at the base.

| Variety | Days |
|---|---|
| Cherry | 60 |
| Roma | 75 |

```python
{CODE}
```

That is all for today, and a few more words to keep the stream going a little longer.
"""

# Per animation frame while the reply is busy: which Markdown elements its body holds, and
# whether Markdown syntax shows as raw text outside code.
WATCH_RENDERING = """
() => {
  window.__ollmSeen = {};
  window.__ollmRaw = [];
  const step = () => {
    const replies = document.querySelectorAll('article[aria-label="Assistant message"]');
    const last = replies[replies.length - 1];
    if (last && last.getAttribute('aria-busy') === 'true') {
      const body = last.querySelector('.message-content');
      if (body) {
        for (const sel of ['h2', 'strong', 'ul li', 'table td', 'pre code', 'pre code span']) {
          if (body.querySelector(sel)) window.__ollmSeen[sel] = true;
        }
        const clone = body.cloneNode(true);
        clone.querySelectorAll('pre, code').forEach((el) => el.remove());
        const text = clone.textContent;
        for (const raw of ['## ', '**sun**', '|---|']) {
          if (text.includes(raw) && !window.__ollmRaw.includes(raw)) window.__ollmRaw.push(raw);
        }
      }
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}
"""


@pytest.fixture
def markdown_proxy(server: str) -> Iterator[str]:
    with serve_proxy(SwappingProxy(server, MARKDOWN)) as url:
        yield url


def test_markdown_renders_while_streaming_and_code_copies(
    new_context: NewContext, markdown_proxy: str, api: httpx.Client
) -> None:
    context = new_context(
        base_url=markdown_proxy, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    chat = create_chat(api, unique("Markdown"))
    open_chat(page, chat["id"])
    page.evaluate(WATCH_RENDERING)
    send(page, "How do I grow tomatoes?")
    reply = wait_reply_done(page)

    seen = page.evaluate("() => window.__ollmSeen")
    for element in ("h2", "strong", "ul li", "table td", "pre code"):
        assert seen.get(element), f"no {element} while the reply streamed: {seen}"
    raw = page.evaluate("() => window.__ollmRaw")
    # A construct still being typed may show raw for a moment; a finished one must not.
    body = content_of(reply)
    expect(body.locator("h2")).to_have_text("Growing tomatoes")
    expect(body.locator("strong")).to_have_text("sun")
    expect(body.locator("ul li")).to_have_count(2)
    expect(body.locator("table tbody tr")).to_have_count(2)
    code = body.locator("pre code")
    expect(code).to_have_count(1)
    assert code.locator("span").count() > 0, "the code block is not highlighted"
    final_text = body.inner_text()
    for syntax in ("## ", "**", "|---|", "```"):
        assert syntax not in final_text, f"raw Markdown {syntax!r} in the rendered reply"
    assert len(raw) < 3, f"Markdown stayed raw while streaming: {raw}"

    body.get_by_role("button", name="Copy", exact=True).click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.strip() == CODE
    assert articles(page, "Assistant").count() == 1
