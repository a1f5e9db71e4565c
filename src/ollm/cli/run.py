"""``ollm run MODEL [PROMPT]``: one answer, or an interactive chat when no prompt is given."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from ollm.cli.client import OllamaClient
from ollm.cli.common import ApiKeyOption, HostOption, open_client, report_errors, stderr, stdout
from ollm.cli.repl import ChatRepl, reply_events
from ollm.cli.session import ChatSession
from ollm.cli.stream import print_stream, stats_lines


def run(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name, such as smollm2:135m.")],
    prompt: Annotated[
        list[str] | None,
        typer.Argument(help="Prompt; without one (and nothing piped in), chat interactively."),
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
    session = ChatSession(model=model, keep_alive=keepalive, format=format, verbose=verbose)
    words = " ".join(prompt or [])
    piped = None if sys.stdin.isatty() else sys.stdin.read()
    with open_client(ctx, host, api_key) as client, report_errors():
        if piped is None and not words:
            _interactive(client, session)
        else:
            text = "\n\n".join(part for part in (piped and piped.strip(), words) if part)
            _one_shot(client, session, text)


def _one_shot(client: OllamaClient, session: ChatSession, text: str) -> None:
    """Print the streamed answer to ``text`` (or just load the model when it is empty)."""
    if not text:
        client.load(session.model, session.keep_alive)
        return
    _describe(client, session)
    session.begin_turn(text)
    spinner = stderr() if sys.stdout.isatty() and sys.stderr.isatty() else None
    reply = print_stream(reply_events(client, session, text), sys.stdout, spinner=spinner)
    sys.stdout.write("\n")
    sys.stdout.flush()
    if session.verbose and reply.final:
        stderr().print("\n".join(stats_lines(reply.final)))


def _describe(client: OllamaClient, session: ChatSession) -> None:
    """Ask the server about the model: an unknown one fails here, with a clear error;
    one without a chat template (a base model) gets plain completions instead of chat."""
    details = client.show(session.model)
    session.completion_only = not details.get("template")


def _interactive(client: OllamaClient, session: ChatSession) -> None:
    """Check the model, load it (spinner), then chat until /bye or Ctrl+D."""
    import readline  # noqa: F401  (line editing and history for input(); terminals only)

    err = stderr()
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
