"""The interactive chat of ``ollm run MODEL``, modelled on ``ollama run``.

``>>>`` reads a message (``\"\"\"`` opens a multi-line block, closed by a line ending in
``\"\"\"``); replies stream as they arrive; Ctrl+C stops a reply and stays; Ctrl+D or
``/bye`` leaves. Input and output are injected, so tests can drive it without a terminal.

In a chat kept on the server (``--chat ID``, ``--save``) each message goes to
``/api/v1/chats/{id}/messages`` and both turns are stored there; a reply stopped with
Ctrl+C is saved as interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from ollm.cli.client import ClientError, OllamaClient
from ollm.cli.session import ChatSession
from ollm.cli.slash import SlashCommands
from ollm.cli.stream import Reply, chat_stats_lines, print_stream, stats_lines

PROMPT = ">>> "
CONTINUATION = "... "
BLOCK = '"""'
EXIT_HINT = "Use Ctrl + d or /bye to exit."


@dataclass(frozen=True)
class UserInput:
    """One logical input; ``block`` when it came from a ``\"\"\"`` block."""

    text: str
    block: bool = False

    @property
    def is_command(self) -> bool:
        """A slash command (a block is a message, unless it is ``/set system \"\"\"...``)."""
        return self.text.startswith("/") and (not self.block or self.text.startswith("/set "))


def read_input(read_line: Callable[[str], str]) -> UserInput:
    """Read a line, or a whole ``\"\"\"`` block; raises ``EOFError`` / ``KeyboardInterrupt``.

    As in ollama, a block opens with ``\"\"\"`` at the start of a line (or after
    ``/set system``) and ends at a line that ends with ``\"\"\"``; text on the opening and
    closing lines belongs to the block.
    """
    line = read_line(PROMPT)
    stripped = line.lstrip()
    opens = stripped.startswith(BLOCK) or (stripped.startswith("/set system") and BLOCK in line)
    if not opens:
        return UserInput(line)
    head, _, rest = line.partition(BLOCK)
    if rest.endswith(BLOCK):  # """all on one line"""
        return UserInput(head + rest[: -len(BLOCK)], block=True)
    lines = [rest]
    while True:
        line = read_line(CONTINUATION)
        if line.endswith(BLOCK):
            lines.append(line[: -len(BLOCK)])
            break
        lines.append(line)
    return UserInput(head + "\n".join(lines).strip("\n"), block=True)


@dataclass
class ChatRepl:
    """The read-eval-print loop: one session, one client, injected input and output."""

    session: ChatSession
    client: OllamaClient
    console: Console
    out: TextIO
    read_line: Callable[[str], str] = input
    spinner: Console | None = None

    def run(self) -> None:
        """Chat until ``/bye`` or Ctrl+D."""
        commands = SlashCommands(self.session, self.client, self.console)
        while True:
            try:
                entry = read_input(self.read_line)
            except KeyboardInterrupt:
                self.out.write("\n")
                self.console.print(EXIT_HINT)
                continue
            except EOFError:
                self.out.write("\n")
                return
            if entry.is_command:
                if not commands.run(entry.text):
                    return
            elif entry.text.strip():
                self.turn(entry.text)

    def turn(self, text: str) -> None:
        """Send one message and stream the reply; Ctrl+C stops the reply, not the chat."""
        reply = Reply()
        self.session.begin_turn(text)
        try:
            events = reply_events(self.client, self.session, text)
            print_stream(events, self.out, reply=reply, spinner=self.spinner)
        except KeyboardInterrupt:
            # Stopped by the person: what was written is kept as the reply.
            stop_on_server(self.client, self.session)
        except ClientError as exc:
            self.session.end_turn(None)
            self.out.write("\n" if reply.text else "")
            self.console.print(f"[red]Error:[/red] {escape(str(exc))}")
            return
        # An interrupted reply is kept too: roles must keep alternating (some chat
        # templates, Gemma's among them, refuse two user turns in a row).
        self.session.end_turn(reply.text)
        self.out.write("\n\n" if reply.text else "\n")
        self.out.flush()
        if self.session.verbose and reply.final:
            self.console.print("\n".join(reply_stats(self.session, reply.final)) + "\n")
        elif reply.final.get("dropped_turns"):
            dropped = reply.final["dropped_turns"]
            self.console.print(
                f"({dropped} earlier turn(s) did not fit the context window and were left out)\n",
                style="dim",
            )


def reply_stats(session: ChatSession, final: dict[str, Any]) -> list[str]:
    """The ``--verbose`` lines for a reply's final event, in its API's terms."""
    return chat_stats_lines(final) if session.chat_id else stats_lines(final)


def stop_on_server(client: OllamaClient, session: ChatSession) -> None:
    """After Ctrl+C in a server-side chat: the closed stream already stops the reply;
    asking explicitly as well waits until it is saved, so the next message cannot find
    the chat still busy. Best effort: a failure here changes nothing for the person."""
    if session.chat_id is None:
        return
    with suppress(ClientError):
        client.stop_reply(session.chat_id)


def reply_events(client: OllamaClient, session: ChatSession, text: str) -> Iterator[dict[str, Any]]:
    """The streamed reply to ``text`` (already added to the history by ``begin_turn``):
    a turn of a chat kept on the server, a chat turn with the history kept here, or a
    plain completion for a model without a chat template."""
    if session.chat_id is not None:
        return client.send_message(session.chat_id, text)
    if session.completion_only:
        return client.generate(
            session.model,
            text,
            system=session.system,
            options=session.options,
            keep_alive=session.keep_alive,
            format=session.format,
        )
    return client.chat(
        session.model,
        session.request_messages(),
        options=session.options,
        keep_alive=session.keep_alive,
        format=session.format,
    )
