"""``ollm run --save`` / ``--chat ID`` and ``ollm chats`` against a real server: the turns
are stored on the server, a resumed chat shows its history, Ctrl+C saves an interrupted
reply. The model is the bundled SmolLM2 at temperature 0; only properties are checked."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_cli import COMMAND_TIMEOUT, MODEL, STEP_TIMEOUT, Terminal, client_env, ollm

pytestmark = pytest.mark.integration

SAVED = re.compile(r"Saved as chat ([0-9a-f-]{36})\. Resume it with: ollm run (\S+) --chat (\S+)")


def get_chat(base_url: str, chat_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/v1/chats/{chat_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def zorblax(live_server: str) -> str:
    """A chat started with ``--save`` and continued once with ``--chat``; its id."""
    first = ollm(
        live_server,
        *("run", MODEL, "--save", "--param", "temperature=0", "--param", "num_predict=48"),
        "My name is Zorblax.",
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip(), "no answer"
    saved = SAVED.search(first.stderr)
    assert saved, first.stderr
    chat_id = saved.group(1)
    assert saved.groups()[1:] == (MODEL, chat_id)
    assert chat_id not in first.stdout  # stdout is the answer alone

    second = ollm(live_server, "run", MODEL, "--chat", chat_id, "What did I just tell you?")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip(), "no answer"
    assert "Traceback" not in second.stderr
    return chat_id


def test_both_runs_are_stored_as_one_conversation(live_server, zorblax):
    chat = get_chat(live_server, zorblax)
    turns = chat["messages"]
    assert [m["role"] for m in turns] == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in turns[::2]] == [
        "My name is Zorblax.",
        "What did I just tell you?",
    ]
    assert all(m["content"].strip() and m["status"] == "complete" for m in turns[1::2])
    assert chat["model"] == MODEL
    assert chat["params"]["temperature"] == 0 and chat["params"]["max_tokens"] == 48
    # The second reply saw the first exchange: its prompt is longer.
    assert turns[3]["prompt_tokens"] > turns[1]["prompt_tokens"] > 0


def test_chats_lists_the_chat(live_server, zorblax):
    result = ollm(live_server, "chats")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "TITLE", "MODEL", "UPDATED"]
    [row] = [line for line in lines[1:] if line.startswith(zorblax)]
    assert "My name is Zorblax." in row and MODEL in row and "ago" in row


def test_an_unknown_chat_is_a_clear_error(live_server):
    result = ollm(live_server, "run", MODEL, "--chat", "no-such-chat", "hi")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: chat no-such-chat not found"


@pytest.fixture
def resumed(live_server: str, zorblax: str) -> Iterator[Terminal]:
    """``ollm run MODEL --chat ID`` in a terminal, at its first prompt."""
    argv = [sys.executable, "-m", "ollm", "run", MODEL, "--chat", zorblax]
    terminal = Terminal(argv, client_env(live_server))
    try:
        yield terminal
    finally:
        terminal.close()


def test_resume_in_a_terminal_shows_the_history_and_ctrl_c_saves_an_interrupted_reply(
    live_server, zorblax, resumed
):
    history = resumed.until_prompt(COMMAND_TIMEOUT)
    assert f"({zorblax}, 4 messages)" in history
    assert "user: My name is Zorblax." in history
    assert "user: What did I just tell you?" in history
    assert history.count("assistant: ") == 2

    # A long reply, stopped while it streams.
    resumed.line("/set parameter num_predict 1500")
    resumed.expect("Set parameter 'num_predict' to '1500'")
    resumed.until_prompt()
    resumed.line("Write a long, detailed essay about the history of the Roman Empire.")
    resumed.expect(r"Roman Empire\.\n")
    resumed.wait_for(
        lambda text: len(text) if len(re.sub(r"\s", "", text)) >= 20 else None,
        STEP_TIMEOUT,
        "20 characters of reply",
    )
    resumed.send("\x03")
    resumed.until_prompt(timeout=30)

    turns = get_chat(live_server, zorblax)["messages"]
    assert len(turns) == 6
    assert turns[4]["content"].startswith("Write a long, detailed essay")
    assert turns[5]["status"] == "interrupted" and turns[5]["content"].strip()

    resumed.line("/bye")
    assert resumed.wait_exit(timeout=15) == 0
