"""Printing a streamed reply as it arrives, and the timing stats of ``--verbose``.

Two kinds of stream arrive here: Ollama's (``/api/chat``, ``/api/generate``: objects with
``message.content`` or ``response``, the last with ``done: true``) and ollm's own chat
replies (``/api/v1/chats/{id}/messages``: events with a ``type`` of ``start``, ``queue``,
``delta`` or ``done``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console

from ollm.cli.humanize import human_duration


@dataclass
class Reply:
    """What has arrived so far; filled in place, so an interrupted reply keeps its text."""

    text: str = ""
    final: dict[str, Any] = field(default_factory=dict)


def event_text(event: dict[str, Any]) -> str:
    """The new text in one event of ``/api/chat`` (``message.content``), ``/api/generate``
    or ``/api/v1`` (a ``delta``'s ``content``; its other events carry no new text: the
    ``done`` event's ``message`` is the whole reply as saved)."""
    if "type" in event:
        return str(event.get("content") or "") if event["type"] == "delta" else ""
    message = event.get("message")
    if isinstance(message, dict):
        return str(message.get("content") or "")
    return str(event.get("response") or "")


def print_stream(
    events: Iterator[dict[str, Any]],
    out: TextIO,
    *,
    reply: Reply | None = None,
    spinner: Console | None = None,
) -> Reply:
    """Write each piece of text to ``out`` the moment it arrives; return the whole reply.

    ``spinner``: a console (a terminal) to show a spinner on until the first text arrives;
    while the request waits for a free slot, the spinner says its place in the queue.
    However this ends (done, error, Ctrl+C), the stream is closed, which stops the
    generation on the server.
    """
    reply = reply if reply is not None else Reply()
    status = spinner.status("", spinner="dots") if spinner is not None else nullcontext()
    with closing(events), status as live:
        for event in events:
            if event.get("type") == "queue" and live is not None:
                live.update(f"waiting for a free slot (position {event.get('position')})")
            text = event_text(event)
            if text:
                if live is not None:
                    live.stop()
                    live = None
                reply.text += text
                out.write(text)
                out.flush()
            if event.get("done") or event.get("type") == "done":
                reply.final = event
    return reply


def _rate(count: int | None, duration_ns: int | None) -> str:
    if not count or not duration_ns:
        return "n/a"
    return f"{count / (duration_ns / 1e9):.2f} tokens/s"


def stats_lines(final: dict[str, Any]) -> list[str]:
    """``--verbose`` output: ollama's timing report from a reply's final event."""
    rows = [
        ("total duration", human_duration(final.get("total_duration"))),
        ("load duration", human_duration(final.get("load_duration"))),
        ("prompt eval count", f"{final.get('prompt_eval_count') or 0} token(s)"),
        ("prompt eval duration", human_duration(final.get("prompt_eval_duration"))),
        (
            "prompt eval rate",
            _rate(final.get("prompt_eval_count"), final.get("prompt_eval_duration")),
        ),
        ("eval count", f"{final.get('eval_count') or 0} token(s)"),
        ("eval duration", human_duration(final.get("eval_duration"))),
        ("eval rate", _rate(final.get("eval_count"), final.get("eval_duration"))),
    ]
    return [f"{name + ':':<22}{value}" for name, value in rows]


def _ms(value: float | None) -> str:
    return human_duration(value * 1e6) if value is not None else "n/a"


def chat_stats_lines(final: dict[str, Any]) -> list[str]:
    """``--verbose`` output for a reply in a chat kept on the server (its ``done`` event)."""
    usage = final.get("usage") or {}
    timings = final.get("timings") or {}
    speed = timings.get("tokens_per_second")
    rows = [
        ("total duration", _ms(timings.get("duration_ms"))),
        ("time to first token", _ms(timings.get("ttft_ms"))),
        ("prompt tokens", f"{usage.get('prompt_tokens') or 0} token(s)"),
        ("reply tokens", f"{usage.get('completion_tokens') or 0} token(s)"),
        ("reply rate", f"{speed:.2f} tokens/s" if speed else "n/a"),
        ("finish reason", str(final.get("finish_reason") or "")),
    ]
    if final.get("dropped_turns"):
        rows.append(("turns left out", f"{final['dropped_turns']} (did not fit the context)"))
    return [f"{name + ':':<22}{value}" for name, value in rows]
