"""Nothing lost: SIGKILL a real server in the middle of a streamed reply, start it again
on the same data, and find the chat whole.

The reply's text so far was checkpointed while it streamed, so the killed server leaves
it ``streaming`` with part of its text; the start-up sweep marks it ``interrupted``. The
SQLite file must pass its integrity checks (the database's and the FTS index's).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import STARTUP_TIMEOUT, free_port
from v1_helpers import SERVER_ENV, ask, events, new_chat

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# SmolLM2 keeps repeating at temperature 0, even after an unrelated first exchange.
LONG_REPLY = "Repeat the word hello 500 times: hello hello hello hello hello"
STREAM_SECONDS = 3.0  # a few checkpoints (one a second) before the kill


@contextmanager
def server_process(
    home: Path, log_path: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``ollm serve`` as a process this test may kill; yields it and its URL."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OLLM_")}
    environment.update({"OLLM_HOME": str(home), **env})
    command = [sys.executable, "-m", "ollm", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield process, base_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def check_integrity(database: Path) -> None:
    """SQLite's own check of every page and index, and FTS5's of its index."""
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        connection.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
        connection.execute("INSERT INTO chats_fts(chats_fts) VALUES ('integrity-check')")


def last_message(database: Path) -> tuple[str, str, str]:
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT role, status, content FROM messages ORDER BY id DESC LIMIT 1"
        ).fetchone()


def stream_then_kill(
    client: httpx.Client, process: subprocess.Popen[bytes], chat_id: str
) -> tuple[int, str]:
    """Stream a long reply for a few seconds, then SIGKILL the server mid-stream.

    Returns the id of the reply being written and the text received before the kill.
    """
    received: list[str] = []
    reply_id = None
    started = None
    with client.stream(
        "POST", f"/api/v1/chats/{chat_id}/messages", json={"content": LONG_REPLY}
    ) as response:
        assert response.status_code == 200
        for event in events(response):
            assert isinstance(event, dict) and event["type"] != "done", "the reply ended early"
            if event["type"] == "start":
                reply_id = event["message"]["id"]
            if event["type"] == "delta":
                received.append(event["content"])
                started = started or time.monotonic()
                if time.monotonic() - started >= STREAM_SECONDS:
                    process.send_signal(signal.SIGKILL)
                    process.wait(10)
                    break
    assert reply_id is not None and process.returncode == -signal.SIGKILL
    return reply_id, "".join(received)


def test_sigkill_mid_stream_loses_nothing(ollm_home: Path, tmp_path: Path) -> None:
    database = tmp_path / "chats.db"
    env = {**SERVER_ENV, "OLLM_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    log = tmp_path / "server.log"

    with server_process(ollm_home, log, **env) as (process, base_url):
        client = httpx.Client(base_url=base_url, timeout=60)
        chat = new_chat(client, params={"temperature": 0, "max_tokens": 16})
        first = ask(client, chat["id"], "My name is Zorblax.")
        client.patch(f"/api/v1/chats/{chat['id']}", json={"params": {"temperature": 0}})
        reply_id, received = stream_then_kill(client, process, chat["id"])
        client.close()

    check_integrity(database)
    role, status, saved_text = last_message(database)
    assert (role, status) == ("assistant", "streaming")  # as the kill left it
    assert saved_text and received.startswith(saved_text)  # checkpointed text so far

    with server_process(ollm_home, log, **env) as (_process, base_url):
        client = httpx.Client(base_url=base_url, timeout=60)
        messages = client.get(f"/api/v1/chats/{chat['id']}").json()["messages"]
        assert [(m["role"], m["status"]) for m in messages] == [
            ("user", "complete"),
            ("assistant", "complete"),
            ("user", "complete"),
            ("assistant", "interrupted"),  # the start-up sweep
        ]
        assert messages[0]["content"] == "My name is Zorblax."
        assert {key: messages[1][key] for key in first["message"]} == first["message"]
        assert messages[2]["content"] == LONG_REPLY
        assert messages[3]["id"] == reply_id and messages[3]["content"] == saved_text
        # The chat carries on, and search still finds it.
        client.patch(f"/api/v1/chats/{chat['id']}", json={"params": {"max_tokens": 8}})
        assert ask(client, chat["id"], "Thanks.")["message"]["status"] == "complete"
        assert client.get("/api/v1/chats", params={"q": "zorblax"}).json()["total"] == 1
        client.close()
    check_integrity(database)
