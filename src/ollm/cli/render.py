"""Rich renderings of what the server reports: model and chat tables, model details, pull
progress."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from ollm.cli.humanize import human_ago, human_size, human_until
from ollm.placement import processor_split

LICENSE_LINES = 2  # ollama shows the start of a license, not all of it


def short_digest(digest: str | None) -> str:
    """The first 12 hex digits of a digest (``sha256:`` prefix dropped), as ollama shows."""
    if not digest:
        return ""
    return digest.split(":", 1)[-1][:12]


def _table(*headers: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 3, 0, 0))
    for header in headers:
        # Names are never wrapped: a model id split over two lines cannot be copied.
        table.add_column(header, no_wrap=header in {"NAME", "ID"}, overflow="fold")
    return table


def models_table(models: Iterable[dict[str, Any]]) -> Table:
    """``ollm list``: NAME, ID, SIZE, MODIFIED."""
    table = _table("NAME", "ID", "SIZE", "MODIFIED")
    for model in models:
        table.add_row(
            Text(model.get("name") or model.get("model") or ""),
            short_digest(model.get("digest")),
            human_size(model.get("size")),
            human_ago(model.get("modified_at")),
        )
    return table


def chats_table(chats: Iterable[dict[str, Any]]) -> Table:
    """``ollm chats``: ID, TITLE, MODEL, UPDATED (pinned chats marked)."""
    table = _table("ID", "TITLE", "MODEL", "UPDATED")
    for chat in chats:
        title = chat.get("title") or ""
        table.add_row(
            Text(str(chat.get("id") or "")),
            Text(f"{title} (pinned)" if chat.get("pinned") else title),
            Text(chat.get("model") or ""),
            human_ago(chat.get("updated_at")),
        )
    return table


def processor(model: dict[str, Any]) -> str:
    """Where a loaded model lives: ``100% CPU``, ``100% GPU`` or a split."""
    return processor_split(model.get("size") or 0, model.get("size_vram") or 0)


def running_table(models: Iterable[dict[str, Any]]) -> Table:
    """``ollm ps``: NAME, ID, SIZE, PROCESSOR, CONTEXT, UNTIL."""
    table = _table("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")
    for model in models:
        context = model.get("context_length")
        table.add_row(
            Text(model.get("name") or model.get("model") or ""),
            short_digest(model.get("digest")),
            human_size(model.get("size")),
            processor(model),
            str(context) if context else "",
            human_until(model.get("expires_at")),
        )
    return table


def parse_parameters(text: str | None) -> list[tuple[str, str]]:
    """The ``parameters`` string of ``/api/show`` (``name value`` lines) as pairs."""
    pairs = []
    for line in (text or "").splitlines():
        name, _, value = line.strip().partition(" ")
        if name:
            pairs.append((name, value.strip()))
    return pairs


def _info_rows(show: dict[str, Any]) -> list[tuple[str, str]]:
    details = show.get("details") or {}
    info = show.get("model_info") or {}
    arch = info.get("general.architecture") or details.get("family") or ""
    count = info.get("general.parameter_count")
    rows = [
        ("architecture", arch),
        ("parameters", details.get("parameter_size") or (_count(count) if count else "")),
        ("context length", info.get(f"{arch}.context_length", "")),
        ("embedding length", info.get(f"{arch}.embedding_length", "")),
        ("quantization", details.get("quantization_level", "")),
        ("format", details.get("format", "")),
    ]
    return [(name, str(value)) for name, value in rows if value not in ("", None)]


def _count(count: int) -> str:
    """A parameter count like ollama prints it: ``134.52M``, ``1.24B``."""
    for divisor, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= divisor:
            return f"{count / divisor:.2f}{unit}"
    return str(count)


def _section(title: str, rows: Iterable[tuple[str, ...]]) -> RenderableType | None:
    """A titled, indented two-column block; ``None`` when there is nothing to show."""
    rows = list(rows)
    if not rows:
        return None
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 3, 0, 0))
    for _ in rows[0]:
        table.add_column(overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return Group(
        Text(f"  {title}", style="bold"), Padding(table, (0, 0, 0, 4), expand=False), Text("")
    )


def model_details(show: dict[str, Any]) -> RenderableType:
    """``ollm show``: Model, Capabilities, Parameters, System and License sections."""
    license_text = show.get("license") or ""
    if isinstance(license_text, list):
        license_text = "\n".join(license_text)
    license_lines = [line.strip() for line in license_text.splitlines() if line.strip()]
    if len(license_lines) > LICENSE_LINES:
        license_lines = [*license_lines[:LICENSE_LINES], "..."]
    sections = [
        _section("Model", _info_rows(show)),
        _section("Capabilities", [(c,) for c in show.get("capabilities") or []]),
        _section("Parameters", parse_parameters(show.get("parameters"))),
        _section("System", [(line,) for line in (show.get("system") or "").splitlines()]),
        _section("License", [(line,) for line in license_lines]),
    ]
    return Group(Text(""), *(s for s in sections if s is not None))


class PullProgress:
    """Draws ollama's pull stream: status lines, and a bar for each digest downloading.

    A bar lives only while downloads run; a status line arriving after bars ends their
    display first, so lines stay in the order things happened.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self.last_status = ""

    def _bars(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._tasks = {}
        return self._progress

    def update(self, event: dict[str, Any]) -> None:
        """Apply one progress object from ``/api/pull``."""
        status = str(event.get("status") or "")
        digest = event.get("digest")
        total = event.get("total")
        if digest and total:
            bars = self._bars()
            task = self._tasks.get(digest)
            if task is None:
                task = bars.add_task(f"pulling {short_digest(digest)}", total=total)
                self._tasks[digest] = task
            bars.update(task, total=total, completed=event.get("completed") or 0)
        elif status and status != self.last_status:
            self.stop()
            self.console.print(escape(status))
        self.last_status = status

    def stop(self) -> None:
        """End the bars' live display (its last frame stays on screen)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> PullProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
