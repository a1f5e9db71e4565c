"""``ollm run MODEL [PROMPT]``: one answer, or an interactive chat when no prompt is given.

By default the history lives in this process and each turn goes to ``/api/chat``. With
``--chat ID`` the conversation is a chat kept on the server (``/api/v1/chats``): it is
resumed, and every turn is stored there; ``--save`` starts such a chat and prints its id.
"""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.text import Text

from ollm.cli.chats import fetch_chat, print_history, resume_chat, resume_hint, start_chat
from ollm.cli.client import ClientError, OllamaClient
from ollm.cli.common import (
    ApiKeyOption,
    HostOption,
    open_client,
    print_error,
    report_errors,
    stderr,
    stdout,
)
from ollm.cli.repl import ChatRepl, reply_events, reply_stats, stop_on_server
from ollm.cli.session import ChatSession, ParameterError
from ollm.cli.stream import print_stream


def run(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name, such as smollm2:135m.")],
    prompt: Annotated[
        list[str] | None,
        typer.Argument(help="Prompt; without one (and nothing piped in), chat interactively."),
    ] = None,
    chat: Annotated[
        str | None,
        typer.Option(
            "--chat",
            metavar="ID",
            help="Continue a chat kept on the server (`ollm chats` lists them); "
            "both turns of every message are stored there.",
            show_default=False,
        ),
    ] = None,
    save: Annotated[
        bool,
        typer.Option(
            "--save",
            "--new-chat",
            help="Start a new chat kept on the server and print its id, to resume it "
            "later with --chat ID.",
        ),
    ] = False,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="NAME=VALUE",
            help="Set a parameter as /set parameter does, such as temperature=0 "
            "(repeatable; stored with a chat kept on the server).",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Print timings after replies.")
    ] = False,
    keepalive: Annotated[
        str | None, typer.Option(help="How long to keep the model loaded, such as 5m or 0.")
    ] = None,
    format: Annotated[str | None, typer.Option("--format", help="Response format (json).")] = None,
    host: HostOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run a model: answer PROMPT and exit, or chat interactively."""
    if chat is not None and save:
        _usage_error("--chat continues a saved chat and --save starts one: use one of them")
    if (chat is not None or save) and format:
        _usage_error("--format is not available in a chat kept on the server")
    session = ChatSession(model=model, keep_alive=keepalive, format=format, verbose=verbose)
    _apply_params(session, param or [])
    words = " ".join(prompt or [])
    piped = None if sys.stdin.isatty() else sys.stdin.read()
    interactive = piped is None and not words
    with open_client(ctx, host, api_key) as client, report_errors():
        if chat is not None or save:
            _server_chat(client, session, chat, interactive=interactive)
        if interactive:
            _interactive(client, session)
        else:
            text = "\n\n".join(part for part in (piped and piped.strip(), words) if part)
            _one_shot(client, session, text)


def _usage_error(message: str) -> None:
    print_error(message)
    raise typer.Exit(2)


def _apply_params(session: ChatSession, items: list[str]) -> None:
    """``--param NAME=VALUE``, each parsed as ``/set parameter NAME VALUE`` would be."""
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            _usage_error(f"--param wants NAME=VALUE, such as temperature=0 (got {item!r})")
        try:
            values = shlex.split(value)
        except ValueError:
            values = value.split()
        try:
            session.set_parameter(name.strip(), values)
        except ParameterError as exc:
            _usage_error(str(exc))


def _server_chat(
    client: OllamaClient, session: ChatSession, chat_id: str | None, *, interactive: bool
) -> None:
    """Resume chat ``chat_id`` (printing its earlier turns when interactive), or start a
    new one and print its id; the session then sends its turns to that chat."""
    existing = fetch_chat(client, chat_id) if chat_id is not None else None
    _describe(client, session)
    if session.completion_only:
        raise ClientError(
            f"{session.model} has no chat template, so it cannot hold a chat kept on the "
            f"server; run it without --chat and --save"
        )
    # What the person asked for goes to stdout in a chat, to stderr before a one-shot
    # answer (so the answer alone can be piped on).
    console = stdout() if interactive else stderr()
    if existing is not None:
        notices = resume_chat(client, session, existing)
        if interactive:
            print_history(console, existing)
        for notice in notices:
            console.print(Text(notice), style="dim", soft_wrap=True)
        return
    chat = start_chat(client, session)
    console.print(
        Text(f"Saved as chat {chat['id']}. Resume it with: {resume_hint(session)}"),
        style="dim",
        soft_wrap=True,
    )


def _one_shot(client: OllamaClient, session: ChatSession, text: str) -> None:
    """Print the streamed answer to ``text`` (or just load the model when it is empty)."""
    if not text:
        client.load(session.model, session.keep_alive)
        return
    if session.chat_id is None:
        _describe(client, session)  # a server chat was checked when it was opened
    session.begin_turn(text)
    spinner = stderr() if sys.stdout.isatty() and sys.stderr.isatty() else None
    try:
        reply = print_stream(reply_events(client, session, text), sys.stdout, spinner=spinner)
    except KeyboardInterrupt:
        if session.chat_id is None:
            raise
        stop_on_server(client, session)  # saved as interrupted
        sys.stdout.write("\n")
        raise typer.Exit(130) from None
    sys.stdout.write("\n")
    sys.stdout.flush()
    if session.verbose and reply.final:
        stderr().print("\n".join(reply_stats(session, reply.final)))


def _describe(client: OllamaClient, session: ChatSession) -> None:
    """Ask the server about the model: an unknown one fails here, with a clear error;
    one without a chat template (a base model) gets plain completions instead of chat."""
    details = client.show(session.model)
    session.completion_only = not details.get("template")


def _interactive(client: OllamaClient, session: ChatSession) -> None:
    """Check the model, load it (spinner), then chat until /bye or Ctrl+D."""
    import readline  # noqa: F401  (line editing and history for input(); terminals only)

    err = stderr()
    if session.chat_id is None:
        _describe(client, session)
    with err.status("", spinner="dots"):
        client.load(session.model, session.keep_alive)
    console = stdout()
    if session.completion_only:
        console.print(
            f"{escape(session.model)} has no chat template: each message is completed on "
            "its own, without the conversation before it.",
            style="dim",
        )
    repl = ChatRepl(session, client, console, sys.stdout, spinner=err if err.is_terminal else None)
    repl.run()
