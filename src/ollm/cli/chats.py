"""Chats kept on the server (``/api/v1/chats``): ``ollm chats``, and what ``ollm run
--chat ID`` / ``--save`` need to find, start, resume and show them.

The server keeps the history, the system prompt and the sampling params of such a chat;
the CLI only holds its id, sends each new message, and shows what the server stored.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from ollm.cli.client import ClientError, OllamaClient, ServerError
from ollm.cli.common import (
    ApiKeyOption,
    HostOption,
    open_client,
    print_table,
    report_errors,
    stdout,
)
from ollm.cli.render import chats_table
from ollm.cli.session import ChatSession

HISTORY_MESSAGES = 10  # the earlier turns shown when a chat is resumed; older ones are counted
PREVIEW_LINES = 4  # of each message shown
PREVIEW_CHARS = 300
STATUS_NOTES = {"interrupted": "interrupted", "error": "failed", "streaming": "being written"}


def fetch_chat(client: OllamaClient, chat_id: str) -> dict[str, Any]:
    """The chat with its active branch; a missing one (or someone else's) is a clear error."""
    if not chat_id.strip():
        raise ClientError("a chat id is needed (`ollm chats` lists them)")
    try:
        return client.get_chat(chat_id)
    except ServerError as exc:
        if exc.status_code == 404 and exc.code in ("chat_not_found", None):
            raise ClientError(f"chat {chat_id} not found") from None
        raise


def resume_chat(client: OllamaClient, session: ChatSession, chat: dict[str, Any]) -> list[str]:
    """Make ``session`` continue ``chat`` with ``session.model`` and any options already set
    on the session (``--param``), storing those on the server. Returns notices to show."""
    notices = []
    given = dict(session.options)
    session.adopt_chat(chat)
    changes: dict[str, Any] = {}
    if chat.get("model") != session.model:
        changes["model"] = session.model
        if chat.get("model"):
            notices.append(f"This chat used {chat['model']}; it continues with {session.model}.")
    if given:
        session.options.update(given)
        changes["params"] = session.chat_params()
    if changes:
        client.update_chat(session.chat_id or "", **changes)
    return notices


def start_chat(client: OllamaClient, session: ChatSession) -> dict[str, Any]:
    """A new chat on the server with the session's model, system prompt and options."""
    fields: dict[str, Any] = {"params": session.chat_params()}
    if session.system:
        fields["system_prompt"] = session.system
    chat = client.create_chat(session.model, **fields)
    session.chat_id = str(chat["id"])
    return chat


def resume_hint(session: ChatSession) -> str:
    """The command that continues the session's chat later."""
    return f"ollm run {session.model} --chat {session.chat_id}"


def _preview(content: str) -> str:
    """The start of a message: a few lines, a few hundred characters."""
    lines = content.strip().splitlines()
    text = "\n".join(lines[:PREVIEW_LINES])
    cut = len(lines) > PREVIEW_LINES
    if len(text) > PREVIEW_CHARS:
        text, cut = text[:PREVIEW_CHARS].rstrip(), True
    return text + (" …" if cut else "")


def history_text(messages: list[dict[str, Any]], limit: int = HISTORY_MESSAGES) -> Text:
    """The last ``limit`` turns of a branch, dimmed, each labelled with its role; a reply
    that did not finish says so, and a turn with other versions says which one it is."""
    text = Text(style="dim")
    earlier = len(messages) - limit
    if earlier > 0:
        text.append(f"… {earlier} earlier message{'s' if earlier != 1 else ''}\n")
    for message in messages[-limit:]:
        label = str(message.get("role") or "?")
        count = message.get("sibling_count") or len(message.get("sibling_ids") or ())
        if count > 1:
            index = (message.get("sibling_ids") or []).index(message.get("id")) + 1
            label += f" ({index}/{count})"
        text.append(f"{label}: ", style="bold")
        text.append(_preview(str(message.get("content") or "")))
        note = STATUS_NOTES.get(str(message.get("status")))
        if note:
            text.append(f" [{note}]", style="italic")
        text.append("\n")
    return text


def print_history(console: Console, chat: dict[str, Any]) -> None:
    """What a resumed chat shows first: its title and id, then its earlier turns."""
    messages = list(chat.get("messages") or [])
    count = f"{len(messages)} message{'s' if len(messages) != 1 else ''}"
    head = Text(f"Resuming \u201c{chat.get('title') or ''}\u201d ({chat.get('id')}, {count})")
    console.print(head, style="dim", soft_wrap=True)
    if messages:
        console.print(history_text(messages), end="", soft_wrap=True)
    console.print()


def list_chats(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=200, help="How many.")] = 20,
    search: Annotated[
        str | None,
        typer.Option("--search", "-s", help="Only chats whose title or messages match."),
    ] = None,
    host: HostOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List recent chats kept on the server (resume one with `ollm run MODEL --chat ID`)."""
    with open_client(ctx, host, api_key) as client, report_errors():
        page = client.list_chats(limit=limit, q=search)
    items = list(page.get("items") or [])
    console = stdout()
    if not items:
        hint = "" if search else " Start one with `ollm run MODEL --save`."
        console.print(Text(f"No chats found.{hint}"))
        return
    print_table(console, chats_table(items))
    total = int(page.get("total") or 0)
    if total > len(items):
        console.print(Text(f"({len(items)} of {total}; --limit shows more)", style="dim"))
