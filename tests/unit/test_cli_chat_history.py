"""``ollm run --chat ID`` / ``--save`` and ``ollm chats``: chats kept on the server,
against a fake ``/api/v1`` (``httpx.MockTransport``)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from rich.console import Console
from test_cli_fakes import FakeServer, interrupting_stream
from typer.testing import CliRunner

from ollm.cli.chats import history_text, print_history
from ollm.cli.client import OllamaClient, ServerError
from ollm.cli.common import CliContext
from ollm.cli.main import app
from ollm.cli.repl import ChatRepl
from ollm.cli.session import ChatSession
from ollm.cli.stream import print_stream

MODEL = "smollm2:135m"
CHAT_ID = "0f2d6c1e-6a43-4b5e-9a57-0c1d2e3f4a5b"
CHAT_PATH = f"/api/v1/chats/{CHAT_ID}"


def sse(events: Iterable[Any]) -> bytes:
    """Events framed as the server frames them, ending with ``[DONE]``."""
    frames = [f"data: {json.dumps(event)}\n\n" for event in events]
    return ("".join(frames) + "data: [DONE]\n\n").encode()


def message(id: int, role: str, content: str, **fields: Any) -> dict[str, Any]:
    """A message as ``/api/v1`` shows it on a branch."""
    return {
        "id": id,
        "chat_id": CHAT_ID,
        "parent_id": id - 1 if id > 1 else None,
        "role": role,
        "content": content,
        "model": MODEL if role == "assistant" else None,
        "status": "complete",
        "prompt_tokens": None,
        "completion_tokens": None,
        "created_at": "2025-01-01T00:00:00Z",
        "sibling_ids": [id],
        "sibling_count": 1,
        **fields,
    }


def reply_events(*pieces: str, prompt_tokens: int = 12, **done: Any) -> list[dict[str, Any]]:
    """A ``/messages`` stream: start, a queue position, the pieces, then done."""
    text = "".join(pieces)
    return [
        {
            "type": "start",
            "chat_id": CHAT_ID,
            "user_message": message(3, "user", "q"),
            "message": message(4, "assistant", "", status="streaming"),
            "dropped_turns": 0,
        },
        {"type": "queue", "position": 1},
        *({"type": "delta", "content": piece} for piece in pieces),
        {
            "type": "done",
            "message": message(4, "assistant", text),
            "finish_reason": "stop",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(pieces),
                "total_tokens": prompt_tokens + len(pieces),
            },
            "timings": {"ttft_ms": 40.0, "tokens_per_second": 25.0, "duration_ms": 120.0},
            "dropped_turns": 0,
            "error": None,
            **done,
        },
    ]


def chat_detail(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """``GET /api/v1/chats/{id}``."""
    return {
        "id": CHAT_ID,
        "title": "My name is Zorblax.",
        "model": MODEL,
        "system_prompt": None,
        "params": {"temperature": 0.0, "max_tokens": 64},
        "pinned": False,
        "archived": False,
        "active_leaf_id": 2,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:00Z",
        "messages": messages
        if messages is not None
        else [message(1, "user", "My name is Zorblax."), message(2, "assistant", "Hi Zorblax!")],
        "generating": False,
        **fields,
    }


def stream_route(server: FakeServer, path: str, *streams: list[dict[str, Any]]) -> None:
    """Answer POSTs to ``path`` with ``streams`` in turn (the last one repeats)."""
    bodies = [sse(events) for events in streams]

    def answer(_request: httpx.Request) -> httpx.Response:
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    server.handler("POST", path, answer)


def chat_server(**detail: Any) -> FakeServer:
    """A server with a chat model and the chat ``CHAT_ID``."""
    server = FakeServer()
    server.json("POST", "/api/show", {"template": "{{ .Prompt }}", "details": {}})
    server.json("POST", "/api/generate", {"done": True})
    server.json("GET", CHAT_PATH, chat_detail(**detail))
    server.json("PATCH", CHAT_PATH, chat_detail(**detail))
    server.json("POST", f"{CHAT_PATH}/stop", {"stopped": True, "message": None})
    stream_route(server, f"{CHAT_PATH}/messages", reply_events("Your name", " is Zorblax."))
    return server


def run_cli(server: FakeServer, *args: str):
    return CliRunner().invoke(app, list(args), obj=CliContext(transport=server.transport))


def client_for(server: FakeServer) -> OllamaClient:
    return OllamaClient("http://x", transport=server.transport)


# -- the event stream ------------------------------------------------------------------


def test_send_message_yields_the_events_and_stops_at_done():
    server = chat_server()
    events = list(client_for(server).send_message(CHAT_ID, "What did I say?"))
    assert [e["type"] for e in events] == ["start", "queue", "delta", "delta", "done"]
    assert server.bodies(f"{CHAT_PATH}/messages") == [
        {"content": "What did I say?", "stream": True}
    ]


def test_only_deltas_are_printed_and_the_done_event_is_the_final_one():
    out = io.StringIO()
    reply = print_stream((e for e in reply_events("Your name", " is Zorblax.")), out)
    # The done event's message holds the whole reply again; it must not be printed twice.
    assert out.getvalue() == "Your name is Zorblax."
    assert reply.text == "Your name is Zorblax."
    assert reply.final["usage"]["prompt_tokens"] == 12


def test_an_error_event_in_the_stream_raises_with_its_message():
    server = FakeServer()
    error = {
        "error": {
            "message": "The server had an error while streaming.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    stream_route(server, f"{CHAT_PATH}/messages", [reply_events("a")[2], error])
    received = []
    with pytest.raises(ServerError, match="had an error while streaming"):
        for event in client_for(server).send_message(CHAT_ID, "x"):
            received.append(event)
    assert [e["type"] for e in received] == ["delta"]


def test_a_done_event_with_an_error_raises():
    server = FakeServer()
    failed = reply_events(
        finish_reason="error",
        error={
            "message": "the model failed while generating this reply; please retry",
            "type": "server_error",
            "code": "engine_error",
        },
    )
    stream_route(server, f"{CHAT_PATH}/messages", failed)
    with pytest.raises(ServerError, match="model failed") as caught:
        list(client_for(server).send_message(CHAT_ID, "x"))
    assert caught.value.code == "engine_error"


def test_an_error_before_the_stream_keeps_status_and_code():
    server = FakeServer()
    server.json(
        "POST",
        f"{CHAT_PATH}/messages",
        {
            "error": {
                "message": "a reply is still being generated in this chat; stop it first",
                "type": "invalid_request_error",
                "param": None,
                "code": "reply_in_progress",
            }
        },
        status=409,
    )
    with pytest.raises(ServerError, match="still being generated") as caught:
        list(client_for(server).send_message(CHAT_ID, "x"))
    assert (caught.value.status_code, caught.value.code) == (409, "reply_in_progress")


# -- showing a resumed chat ------------------------------------------------------------


def test_resume_prints_the_earlier_turns_labelled_and_dimmed():
    out = io.StringIO()
    console = Console(file=out, width=100, highlight=False, force_terminal=True)
    print_history(console, chat_detail())
    text = out.getvalue()
    assert "\x1b[2m" in text  # dim
    assert CHAT_ID in text and "2 messages" in text and "My name is Zorblax." in text
    plain = history_text(chat_detail()["messages"]).plain
    assert plain == "user: My name is Zorblax.\nassistant: Hi Zorblax!\n"


def test_long_histories_and_messages_are_shortened_and_unfinished_replies_marked():
    messages = [message(i, "user" if i % 2 else "assistant", f"turn {i}") for i in range(1, 15)]
    messages[-1] = message(
        14,
        "assistant",
        "\n".join(f"line {n}" for n in range(10)),
        status="interrupted",
        sibling_ids=[14, 20],
        sibling_count=2,
    )
    text = history_text(messages, limit=4).plain
    assert text.startswith("… 10 earlier messages\n")
    assert "turn 10" not in text and "turn 11" in text
    assert "assistant (1/2): line 0\nline 1\nline 2\nline 3 … [interrupted]" in text
    assert "line 4" not in text


# -- ollm run --chat / --save ------------------------------------------------------------


def test_one_shot_with_chat_appends_one_turn_and_prints_the_reply():
    server = chat_server()
    result = run_cli(server, "run", MODEL, "--chat", CHAT_ID, "What", "did", "I", "say?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Your name is Zorblax.\n"  # no history, no notices: just the answer
    assert server.bodies(f"{CHAT_PATH}/messages") == [
        {"content": "What did I say?", "stream": True}
    ]
    assert server.bodies("/api/chat") == []
    assert server.bodies(CHAT_PATH) == [None]  # fetched, not changed: same model, no --param


def test_an_unknown_chat_is_a_clear_error():
    server = chat_server()
    server.json(
        "GET",
        "/api/v1/chats/nope",
        {
            "error": {
                "message": "no chat with id 'nope'",
                "type": "invalid_request_error",
                "param": None,
                "code": "chat_not_found",
            }
        },
        status=404,
    )
    result = run_cli(server, "run", MODEL, "--chat", "nope", "hi")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: chat nope not found"
    assert server.bodies("/api/v1/chats/nope/messages") == []


def test_save_starts_a_chat_with_the_params_and_prints_its_id_first():
    server = chat_server()
    server.json("POST", "/api/v1/chats", chat_detail(messages=[]), status=201)
    result = run_cli(
        server,
        "run",
        MODEL,
        "--save",
        "--param",
        "temperature=0",
        "--param",
        "num_predict=64",
        "My name is Zorblax.",
    )
    assert result.exit_code == 0, result.output
    assert server.bodies("/api/v1/chats") == [
        {"model": MODEL, "params": {"temperature": 0.0, "max_tokens": 64}}
    ]
    assert f"Saved as chat {CHAT_ID}" in result.stderr
    assert f"ollm run {MODEL} --chat {CHAT_ID}" in result.stderr
    assert result.stdout == "Your name is Zorblax.\n"
    assert server.bodies(f"{CHAT_PATH}/messages") == [
        {"content": "My name is Zorblax.", "stream": True}
    ]


def test_resuming_with_another_model_or_params_updates_the_chat():
    server = chat_server(model="qwen3:0.6b")
    result = run_cli(
        server, "run", MODEL, "--chat", CHAT_ID, "--param", "seed=7", "--verbose", "hi"
    )
    assert result.exit_code == 0, result.output
    [patch] = [body for body in server.bodies(CHAT_PATH) if body is not None]
    assert patch == {"model": MODEL, "params": {"temperature": 0.0, "max_tokens": 64, "seed": 7}}
    assert "This chat used qwen3:0.6b; it continues with smollm2:135m." in result.stderr
    assert "prompt tokens:" in result.stderr and "25.00 tokens/s" in result.stderr


def test_chat_and_save_together_and_base_models_are_refused():
    server = chat_server()
    result = run_cli(server, "run", MODEL, "--chat", CHAT_ID, "--save", "hi")
    assert result.exit_code == 2 and "use one of them" in result.stderr
    server.json("POST", "/api/show", {"details": {}})  # no chat template
    result = run_cli(server, "run", MODEL, "--chat", CHAT_ID, "hi")
    assert result.exit_code == 1 and "has no chat template" in result.stderr
    assert server.bodies(f"{CHAT_PATH}/messages") == []


# -- the interactive chat on a server-side chat ----------------------------------------


def server_repl(
    server: FakeServer, lines: list[str | type[BaseException]]
) -> tuple[ChatRepl, io.StringIO]:
    script = iter(lines)

    def read_line(_prompt: str) -> str:
        item = next(script, EOFError)
        if isinstance(item, type):
            raise item
        return item

    out = io.StringIO()
    console = Console(file=out, width=100, highlight=False)
    session = ChatSession(MODEL)
    session.adopt_chat(chat_detail())
    return ChatRepl(session, client_for(server), console, out, read_line=read_line), out


def test_each_message_goes_to_the_chat_and_settings_are_stored_with_it():
    server = chat_server()
    repl, out = server_repl(
        server,
        [
            "Hello",
            "/set parameter top_k 5",
            "/set system Be brief.",
            "/show parameters",
            "/set format json",
            "/set parameter num_ctx 4096",
            "/bye",
        ],
    )
    repl.run()
    output = out.getvalue()
    assert "Your name is Zorblax.\n\n" in output
    assert server.bodies(f"{CHAT_PATH}/messages") == [{"content": "Hello", "stream": True}]
    assert server.bodies("/api/chat") == []
    assert [b for b in server.bodies(CHAT_PATH) if b] == [
        {"params": {"temperature": 0.0, "max_tokens": 64, "top_k": 5}},
        {"system_prompt": "Be brief."},
    ]
    # The chat's stored params show as the session's own.
    assert "num_predict" in output and "top_k" in output
    assert "Formats are not available in a chat kept on the server." in output
    assert "'num_ctx' is set by the server" in output
    assert repl.session.messages == []  # the history lives on the server


def test_clear_starts_a_new_chat_on_the_server_and_says_so():
    server = chat_server()
    new_id = "11111111-2222-3333-4444-555555555555"
    server.json("POST", "/api/v1/chats", chat_detail(messages=[], id=new_id), status=201)
    stream_route(server, f"/api/v1/chats/{new_id}/messages", reply_events("ok"))
    repl, out = server_repl(server, ["/clear", "again", "/bye"])
    repl.run()
    output = out.getvalue()
    assert f"Started a new chat on the server: {new_id}" in output
    assert f"--chat {CHAT_ID}" in output
    assert server.bodies("/api/v1/chats") == [
        {"model": MODEL, "params": {"temperature": 0.0, "max_tokens": 64}}
    ]
    assert server.bodies(f"/api/v1/chats/{new_id}/messages") == [
        {"content": "again", "stream": True}
    ]


def test_ctrl_c_closes_the_stream_asks_the_server_to_stop_and_the_chat_goes_on():
    server = chat_server()
    partial = sse(reply_events("Once upon")[:3]).removesuffix(b"data: [DONE]\n\n")
    streams = iter(
        [
            httpx.Response(200, content=interrupting_stream([partial])),
            httpx.Response(200, content=sse(reply_events("Fine."))),
        ]
    )
    server.handler("POST", f"{CHAT_PATH}/messages", lambda _request: next(streams))
    repl, out = server_repl(server, ["tell a story", "shorter", "/bye"])
    repl.run()
    assert "Once upon\n\n" in out.getvalue() and "Fine." in out.getvalue()
    paths = [path for _method, path, _body in server.requests]
    assert paths == [f"{CHAT_PATH}/messages", f"{CHAT_PATH}/stop", f"{CHAT_PATH}/messages"]


# -- ollm chats ------------------------------------------------------------------------


def test_chats_lists_id_title_model_and_when():
    server = FakeServer()
    items = [
        {**chat_detail(), "updated_at": "2000-01-01T00:00:00Z"},
        {**chat_detail(), "id": "second-id", "title": "Another", "model": None},
    ]
    page = {"items": items, "total": 5, "offset": 0, "limit": 2}
    queries: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        queries.append(dict(request.url.params))
        return httpx.Response(200, json=page)

    server.handler("GET", "/api/v1/chats", answer)
    result = run_cli(server, "chats", "-n", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "TITLE", "MODEL", "UPDATED"]
    assert CHAT_ID in lines[1] and "My name is Zorblax." in lines[1] and MODEL in lines[1]
    assert "years ago" in lines[1]
    assert lines[2].startswith("second-id") and "Another" in lines[2]
    assert "(2 of 5; --limit shows more)" in result.stdout
    assert queries == [{"limit": "2"}]


def test_chats_with_none_says_how_to_start_one():
    server = FakeServer()
    server.json("GET", "/api/v1/chats", {"items": [], "total": 0, "offset": 0, "limit": 20})
    result = run_cli(server, "chats")
    assert result.exit_code == 0
    assert "No chats found. Start one with `ollm run MODEL --save`." in result.stdout


def test_the_api_key_goes_with_every_chat_request():
    server = chat_server()
    seen: list[str | None] = []
    inner = server.transport

    def check(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return inner.handle_request(request)

    result = CliRunner().invoke(
        app,
        ["run", MODEL, "--chat", CHAT_ID, "hi", "--api-key", "ollm-secret"],
        obj=CliContext(transport=httpx.MockTransport(check)),
    )
    assert result.exit_code == 0, result.output
    assert len(seen) == 3 and set(seen) == {"Bearer ollm-secret"}  # chat, show, message
