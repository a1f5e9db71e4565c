"""What every client command shares: the ``--host`` option, the client, error reporting."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

import httpx
import typer
from rich.console import Console, RenderableType
from rich.markup import escape

from ollm.cli.client import ClientError, OllamaClient, ServerNotRunningError, normalize_host

_TRAILING_SPACE = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")

HostOption = Annotated[
    str | None,
    typer.Option(
        "--host",
        envvar="OLLM_HOST",
        help="Server to talk to: host, host:port or a URL (default http://127.0.0.1:8000).",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="OLLM_API_KEY",
        help="API key, for a server started with --auth (`ollm keys create`).",
        show_default=False,
    ),
]


@dataclass
class CliContext:
    """Passed as the Click context's ``obj``; tests use it to inject an HTTP transport."""

    transport: httpx.BaseTransport | None = None


def stdout() -> Console:
    """A console on the current ``sys.stdout`` (built per command, so tests can capture it)."""
    return Console(highlight=False)


def print_table(console: Console, renderable: RenderableType) -> None:
    """Print at the renderable's natural width when the console is narrower.

    Lines then run long (a terminal wraps them) instead of Rich dropping or cropping
    columns: a model name is never cut short, and piped output stays greppable.
    """
    natural = console.measure(renderable, options=console.options.update_width(10_000)).maximum
    if natural > console.width:
        console.width = natural  # Console.print never renders wider than the console
    with console.capture() as capture:
        console.print(renderable, crop=False)
    # Rich pads every cell to its column's width; drop the padding at line ends.
    lines = (_TRAILING_SPACE.sub(r"\1", line) for line in capture.get().splitlines())
    console.file.write("".join(f"{line}\n" for line in lines))
    console.file.flush()


def stderr() -> Console:
    """A console on the current ``sys.stderr``, for errors and notices."""
    return Console(stderr=True, highlight=False)


def open_client(ctx: typer.Context, host: str | None, api_key: str | None) -> OllamaClient:
    """A client for ``host`` (``--host`` or ``OLLM_HOST``) sending ``api_key`` if any,
    using the transport injected through the context, if any."""
    obj = ctx.find_object(CliContext)
    transport = obj.transport if obj is not None else None
    with report_errors():
        return OllamaClient(normalize_host(host), api_key=api_key, transport=transport)


def print_error(message: str) -> None:
    """``Error: message`` on stderr, the way ollama reports failures."""
    stderr().print(f"[red]Error:[/red] {escape(message)}", soft_wrap=True)


@contextmanager
def report_errors() -> Iterator[None]:
    """Turn a :class:`ClientError` into a printed message and exit code 1 (no traceback)."""
    try:
        yield
    except ServerNotRunningError as exc:
        stderr().print(escape(str(exc)), soft_wrap=True)
        raise typer.Exit(1) from None
    except ClientError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
