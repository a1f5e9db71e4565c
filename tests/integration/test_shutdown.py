"""Graceful shutdown of a real server: SIGTERM while a chat reply and a /v1 stream run.

What really happens (see ``ollm.api.http.shutdown``): during the grace the socket stays open and
every new request but ``/health`` gets 503 with ``Retry-After`` in its dialect's shape;
the running streams go on. When the grace is over the chat reply is stopped and saved
``interrupted`` with its text, and the /v1 stream ends with a ``shutting_down`` error event
and ``[DONE]``. Then the socket closes (connections are refused), the database is closed,
and the process exits 0.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_crash_recovery import LONG_REPLY, server_process
from v1_helpers import CHAT_MODEL, SERVER_ENV, events, new_chat

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GRACE = 3.0


class Reader(threading.Thread):
    """Reads one event stream to its end in the background, keeping every payload."""

    def __init__(self, client: httpx.Client, url: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.client, self.url, self.body = client, url, body
        self.received: list[Any] = []
        self.streaming = threading.Event()  # set once text has arrived
        self.status: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.client.stream("POST", self.url, json=self.body) as response:
                self.status = response.status_code
                for event in events(response):
                    self.received.append(event)
                    if _text(event):
                        self.streaming.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.streaming.set()


def _text(event: Any) -> str:
    """The text a chat or OpenAI event adds."""
    if not isinstance(event, dict):
        return ""
    if event.get("type") == "delta":
        return event["content"]
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def _saved_reply(database: Path, message_id: int) -> tuple[str, str]:
    with sqlite3.connect(database) as connection:
        row = connection.execute(
            "SELECT status, content FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
    assert row is not None
    return row


def _refused_during_drain(base_url: str) -> None:
    """New requests get 503 + Retry-After in their dialect's shape; /health still answers."""
    with httpx.Client(base_url=base_url, timeout=10) as fresh:
        openai = fresh.get("/v1/models")
        assert openai.status_code == 503, openai.text
        assert int(openai.headers["Retry-After"]) >= 1
        assert openai.json()["error"]["code"] == "shutting_down"
        assert openai.headers["X-Request-ID"]
        ollama = fresh.get("/api/tags")
        assert ollama.status_code == 503 and isinstance(ollama.json()["error"], str)
        assert fresh.get("/health").status_code == 200


def test_sigterm_drains_then_interrupts_and_exits_0(ollm_home: Path, tmp_path: Path) -> None:
    database = tmp_path / "chats.db"
    env = {
        **SERVER_ENV,
        "OLLM_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "OLLM_SHUTDOWN_GRACE": str(GRACE),
    }
    with server_process(ollm_home, tmp_path / "server.log", **env) as (process, base_url):
        client = httpx.Client(base_url=base_url, timeout=60)
        chat = new_chat(client, params={"temperature": 0, "max_tokens": 1500})
        chat_reader = Reader(
            client, f"/api/v1/chats/{chat['id']}/messages", {"content": LONG_REPLY}
        )
        openai_body = {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": LONG_REPLY}],
            "max_tokens": 1500,
            "temperature": 0,
            "stream": True,
        }
        openai_reader = Reader(client, "/v1/chat/completions", openai_body)
        for reader in (chat_reader, openai_reader):
            reader.start()
            assert reader.streaming.wait(60)

        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.3)
        _refused_during_drain(base_url)
        for reader in (chat_reader, openai_reader):
            reader.join(GRACE + 30)
            assert not reader.is_alive() and reader.error is None, reader.error
        process.wait(GRACE + 15)
        stopped_after = time.monotonic() - signalled
        client.close()

    assert process.returncode == 0, (process.returncode, stopped_after)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/health", timeout=2)

    # The /v1 stream ended cleanly: finished, or told the server is shutting down; then [DONE].
    assert openai_reader.status == 200 and openai_reader.received[-1] == "[DONE]"
    last = openai_reader.received[-2]
    finished = last.get("choices") and last["choices"][0].get("finish_reason")
    assert finished in ("stop", "length") or last["error"]["code"] == "shutting_down", last

    # The chat reply: its final event, and the same text and status in the database.
    assert chat_reader.received[-1] == "[DONE]"
    done = chat_reader.received[-2]
    assert done["type"] == "done", done
    streamed = "".join(_text(event) for event in chat_reader.received)
    assert done["finish_reason"] in ("shutdown", "stop", "length"), done
    status, content = _saved_reply(database, done["message"]["id"])
    assert status == ("interrupted" if done["finish_reason"] == "shutdown" else "complete")
    assert content == streamed and content
