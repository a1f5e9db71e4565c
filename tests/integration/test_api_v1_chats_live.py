"""Chats through a real ``ollm serve`` (auth off) with SmolLM2, on SQLite and on a real
PostgreSQL: context carried across turns, streamed replies saved, branches, stop, fitting
long histories, export/import and search.

Greedy decoding throughout; assertions are about token counts and saved state, never
about the prose.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import run_server
from v1_helpers import (
    DIALECTS,
    SERVER_ENV,
    ask,
    database_url,
    events,
    new_chat,
    post_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GREEDY = {"temperature": 0, "max_tokens": 48}
LONG_REPLY = "Repeat the word hello 500 times."  # SmolLM2 keeps going at temperature 0


@pytest.fixture(scope="module", params=DIALECTS)
def server(
    request: pytest.FixtureRequest, ollm_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server with the bundled models and a fresh chat database of each dialect."""
    url = database_url(request.param, request, tmp_path_factory.mktemp("v1-chats"))
    log = ollm_home.parent / f"v1-chats-{request.param}.log"
    with run_server(ollm_home, log, OLLM_DATABASE_URL=url, **SERVER_ENV) as base_url:
        yield base_url


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


def test_a_continued_conversation_is_answered_with_its_context(client: httpx.Client) -> None:
    chat = new_chat(client, params=GREEDY)
    first = ask(client, chat["id"], "My name is Zorblax.")
    second = ask(client, chat["id"], "What is my name?")
    alone = ask(client, new_chat(client, params=GREEDY)["id"], "What is my name?")

    p1, c1 = first["usage"]["prompt_tokens"], first["usage"]["completion_tokens"]
    p2, p0 = second["usage"]["prompt_tokens"], alone["usage"]["prompt_tokens"]
    assert c1 > 0 and second["dropped_turns"] == 0
    # The second prompt is the first prompt, its reply and the new question...
    assert p2 > p1 + c1
    # ...and exceeds the same question asked alone by at least the first exchange.
    assert p2 - p0 >= c1 + (p1 - p0) // 2
    # The saved turns say the same.
    saved = client.get(f"/api/v1/chats/{chat['id']}").json()
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"] * 2
    assert saved["messages"][1]["completion_tokens"] == c1
    assert saved["messages"][3]["prompt_tokens"] == p2


def test_a_streamed_reply_is_saved_with_usage_and_timings(client: httpx.Client) -> None:
    chat = new_chat(client, params=GREEDY, system_prompt="Answer in one short sentence.")
    received = post_events(
        client, f"/api/v1/chats/{chat['id']}/messages", {"content": "What colour is the sky?"}
    )
    start, done = received[0], received[-2]
    assert start["type"] == "start" and start["message"]["status"] == "streaming"
    text = "".join(e["content"] for e in received if isinstance(e, dict) and e["type"] == "delta")
    assert text.strip()
    assert done["finish_reason"] in ("stop", "length")
    assert done["message"]["content"] == text
    assert done["usage"]["completion_tokens"] > 0
    assert done["timings"]["ttft_ms"] > 0 and done["timings"]["tokens_per_second"] > 0

    saved = client.get(f"/api/v1/chats/{chat['id']}").json()
    question, reply = saved["messages"]
    assert question["content"] == "What colour is the sky?"
    assert reply["content"] == text and reply["status"] == "complete"
    assert reply["model"] == "smollm2:135m"
    assert reply["prompt_tokens"] == done["usage"]["prompt_tokens"]
    assert reply["ttft_ms"] > 0 and reply["tokens_per_second"] > 0
    assert saved["title"] == "What colour is the sky?"


def test_regenerate_and_edit_with_the_real_model(client: httpx.Client) -> None:
    chat = new_chat(client, params={"temperature": 0.9, "seed": 1, "max_tokens": 12})
    base = f"/api/v1/chats/{chat['id']}"
    ask(client, chat["id"], "Tell me a fruit.")
    question, first_reply = client.get(base).json()["messages"]

    client.patch(base, json={"params": {"temperature": 0.9, "seed": 2, "max_tokens": 12}})
    post_events(client, f"{base}/regenerate", {})
    question_again, second_reply = client.get(base).json()["messages"]
    assert question_again["id"] == question["id"]
    assert second_reply["sibling_ids"] == [first_reply["id"], second_reply["id"]]
    assert second_reply["sibling_count"] == 2 and second_reply["sibling_index"] == 1

    post_events(client, f"{base}/edit", {"message_id": question["id"], "content": "A vegetable?"})
    edited, _reply = client.get(base).json()["messages"]
    assert edited["content"] == "A vegetable?" and edited["sibling_count"] == 2

    shown = client.put(f"{base}/active-leaf", json={"message_id": first_reply["id"]}).json()
    assert [m["id"] for m in shown["messages"]] == [question["id"], first_reply["id"]]


def test_stop_keeps_the_partial_reply(client: httpx.Client, server: str) -> None:
    chat = new_chat(client, params={"temperature": 0, "max_tokens": 1500})
    base = f"/api/v1/chats/{chat['id']}"
    stopped: dict[str, object] = {}
    # From another connection, as a second browser tab would, once the reply is under way.
    stopper = threading.Thread(
        target=lambda: stopped.update(httpx.post(f"{server}{base}/stop", timeout=60).json())
    )
    with client.stream("POST", f"{base}/messages", json={"content": LONG_REPLY}) as response:
        received = []
        for event in events(response):
            received.append(event)
            is_delta = isinstance(event, dict) and event["type"] == "delta"
            if is_delta and stopper.ident is None:  # not started yet
                stopper.start()
    stopper.join()
    assert stopped["stopped"] is True
    done = received[-2]
    assert done["finish_reason"] == "stopped" and done["message"]["status"] == "interrupted"
    assert 0 < done["usage"]["completion_tokens"] < 1500
    saved = client.get(base).json()["messages"][-1]
    assert saved["status"] == "interrupted" and saved["content"] == done["message"]["content"]
    # The chat goes on.
    client.patch(base, json={"params": GREEDY})
    assert ask(client, chat["id"], "Thanks!")["finish_reason"] in ("stop", "length")


def test_a_long_history_is_fitted_into_the_window(client: httpx.Client) -> None:
    paragraph = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
    messages = []
    for i in range(24):  # ~150 tokens per turn: far more than a 2048-token window
        messages += [
            {"role": "user", "content": f"Part {i}: {paragraph}"},
            {"role": "assistant", "content": f"Noted part {i}. {paragraph}"},
        ]
    imported = client.post(
        "/api/v1/chats/import",
        json={"title": "Long", "model": "smollm2:135m", "messages": messages},
    ).json()
    client.patch(f"/api/v1/chats/{imported['id']}", json={"params": GREEDY})
    result = ask(client, imported["id"], "Which part came last?")
    assert result["dropped_turns"] > 0 and result["dropped_turns"] % 2 == 0
    assert result["usage"]["prompt_tokens"] <= 2048 - GREEDY["max_tokens"]
    assert result["usage"]["prompt_tokens"] > 1024  # as much as fits is kept
    # Everything is still saved.
    assert len(client.get(f"/api/v1/chats/{imported['id']}").json()["messages"]) == 50

    too_long = client.post(
        f"/api/v1/chats/{imported['id']}/messages", json={"content": paragraph * 30}
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "context_length_exceeded"
    assert len(client.get(f"/api/v1/chats/{imported['id']}").json()["messages"]) == 50


def test_export_import_and_search(client: httpx.Client) -> None:
    chat = new_chat(client, title="Pelican facts", params=GREEDY)
    ask(client, chat["id"], "Tell me about the quetzalcoatlus.")
    export = client.get(f"/api/v1/chats/{chat['id']}/export").json()
    copy = client.post("/api/v1/chats/import", json=export).json()
    original = client.get(f"/api/v1/chats/{chat['id']}").json()
    assert [m["content"] for m in copy["messages"]] == [m["content"] for m in original["messages"]]

    found = client.get("/api/v1/chats", params={"q": "quetzalcoat"}).json()
    assert {c["id"] for c in found["items"]} == {chat["id"], copy["id"]}
    assert client.get("/api/v1/chats", params={"q": "pelican"}).json()["total"] == 2
    markdown = client.get(f"/api/v1/chats/{chat['id']}/export", params={"format": "markdown"})
    assert markdown.text.startswith("# Pelican facts")
    assert client.delete(f"/api/v1/chats/{copy['id']}").status_code == 204
    assert client.get("/api/v1/chats", params={"q": "quetzalcoat"}).json()["total"] == 1
