"""Screenshots of the main screens at desktop (1280x800) and phone (390x844) width, light
and dark, into ``tests/e2e/artifacts/`` (git-ignored), for people to look at; and the
checks a look would make: the theme follows the OS, the phone layout tucks the sidebar away
and nothing is wider than the screen."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from e2e_ui import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    NewContext,
    articles,
    button,
    chat_link,
    content_of,
    create_chat,
    import_chat,
    message_box,
    open_chat,
    sidebar,
    unique,
    wait_reply_done,
)
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SHOTS = ARTIFACTS / "screens"

REPLY = """## Growing tomatoes

Tomatoes want **sun**, steady water and support as they grow:

1. Plant after the last frost, 60 cm apart.
2. Water at the base, not the leaves.
3. Tie the stems to a stake as they climb.

| Variety | Days to harvest | Size |
|---|---|---|
| Cherry | 60 | small |
| Roma | 75 | medium |
| Beefsteak | 85 | large |

A quick check of your soil's pH in Python:

```python
def is_ideal(ph: float) -> bool:
    return 6.2 <= ph <= 6.8

print(is_ideal(6.5))  # True
```

See the [gardening guide](https://example.org/tomatoes) for more.
"""

# The colour behind the middle of the page: the first non-transparent background found
# walking up from the element there.
BACKGROUND_LUMINANCE = """
() => {
  let el = document.elementFromPoint(innerWidth / 2, innerHeight / 2) || document.body;
  for (; el; el = el.parentElement) {
    const m = getComputedStyle(el).backgroundColor.match(/[\\d.]+/g);
    if (m && (m.length < 4 || Number(m[3]) > 0.5)) {
      const [r, g, b] = m.slice(0, 3).map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    }
  }
  return 1;  // nothing painted: the browser's white
}
"""


@pytest.fixture(scope="module")
def showcase(server: str) -> Iterator[dict]:
    """A chat with a rich reply, and a few others so the sidebar has something to show."""
    with httpx.Client(base_url=server, timeout=60) as api:
        for title in ("Weekend trip ideas", "Python list comprehensions", "Bread recipe"):
            import_chat(api, unique(title), [{"role": "user", "content": f"About {title}?"}])
        pinned = create_chat(api, unique("Pinned notes"))
        api.patch(f"/api/v1/chats/{pinned['id']}", json={"pinned": True})
        chat = import_chat(
            api,
            "Growing tomatoes",
            [
                {"role": "user", "content": "How do I grow tomatoes on a balcony?"},
                {"role": "assistant", "content": REPLY},
            ],
        )
        yield chat


def shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(150)  # let transitions settle
    page.screenshot(path=SHOTS / f"{name}.png")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_main_screens(
    new_context: NewContext,
    server: str,
    auth_server: str,
    showcase: dict,
    size: str,
    scheme: str,
) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    options = {"viewport": viewport, "color_scheme": scheme}
    if size == "phone":
        options |= {"is_mobile": True, "has_touch": True, "device_scale_factor": 2}
    page = new_context(base_url=server, **options).new_page()
    suffix = f"{size}-{scheme}"

    # A chat with a reply.
    page.goto(f"/c/{showcase['id']}")
    reply = articles(page, "Assistant").last
    expect(content_of(reply)).to_contain_text("Growing tomatoes")
    expect(content_of(reply).locator("table")).to_be_visible()
    expect(content_of(reply).locator("pre code")).to_be_visible()
    expect(message_box(page)).to_be_visible()
    shoot(page, f"chat-{suffix}")

    luminance = page.evaluate(BACKGROUND_LUMINANCE)
    if scheme == "dark":
        assert luminance < 0.35, f"dark scheme, but the page is light ({luminance:.2f})"
    else:
        assert luminance > 0.65, f"light scheme, but the page is dark ({luminance:.2f})"
    overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the {size} screen"

    # The sidebar with chats: always there on a desktop, behind "Open sidebar" on a phone.
    nav = sidebar(page)
    if size == "phone":
        expect(nav).not_to_be_in_viewport()
        button(page, "Open sidebar").click()
    else:
        expect(button(page, "Open sidebar")).to_be_hidden()
    expect(nav).to_be_in_viewport()
    expect(chat_link(page, "Growing tomatoes")).to_be_visible()
    expect(nav.get_by_text("Pinned", exact=True)).to_be_visible()
    shoot(page, f"sidebar-{suffix}")

    # The chat settings dialog.
    page.goto(f"/c/{showcase['id']}")
    button(page, "Chat settings").click()
    dialog = page.get_by_role("dialog", name="Chat settings")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Temperature", exact=True)).to_be_visible()
    shoot(page, f"settings-{suffix}")
    box = dialog.bounding_box()
    assert box is not None and box["width"] <= viewport["width"], box

    # The login page (auth on, not signed in).
    login = new_context(base_url=auth_server, **options).new_page()
    login.goto("/")
    expect(login.get_by_role("textbox", name="Username", exact=True)).to_be_visible()
    expect(login.get_by_label("Password", exact=True)).to_be_visible()
    shoot(login, f"login-{suffix}")


def test_a_phone_can_chat(new_context: NewContext, server: str) -> None:
    """At 390px: the Message box and Send fit on screen, and a message gets its reply."""
    page = new_context(base_url=server, viewport=PHONE, is_mobile=True, has_touch=True).new_page()
    with httpx.Client(base_url=server, timeout=60) as api:
        chat = create_chat(api, unique("On the phone"))
    open_chat(page, chat["id"])
    box = message_box(page)
    expect(box).to_be_in_viewport()
    box.fill("Say hi.")
    send_button = button(page, "Send")
    expect(send_button).to_be_in_viewport()
    send_button.tap()
    reply = wait_reply_done(page)
    expect(content_of(reply)).not_to_be_empty()
    expect(articles(page, "User")).to_have_count(1)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
