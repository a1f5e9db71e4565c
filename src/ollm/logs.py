"""Logging for ``ollm serve``: one ``dictConfig``, readable text or JSON lines.

Every line may carry the id of the HTTP request it belongs to (set by
:mod:`ollm.api.http.request_id` in :data:`current_request_id`), and every line passes a filter
that masks passwords, API keys, bearer tokens and database passwords, whichever logger
wrote it (uvicorn's included: they propagate to the same handler). Prompts are not logged
by ollm's own code; ``--log-prompts`` is the only switch that may allow it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

current_request_id: ContextVar[str | None] = ContextVar("ollm_request_id", default=None)
"""The id of the HTTP request being served in this context, if any."""

REDACTED = "[REDACTED]"
_SECRET_NAME = r"[\w-]*(?:password|passwd|secret|token|api[_-]?key)"
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Authorization: Bearer x", authorization='x', {"authorization": "x"}
    (
        re.compile(
            r"""(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic)\s+)?[^\s"',}]+""", re.I
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), rf"\1{REDACTED}"),
    # ollm API keys keep their public prefix (it names the key) and lose the secret.
    (re.compile(r"\b(ollm-[0-9a-f]{12}_)[A-Za-z0-9_-]+"), rf"\1{REDACTED}"),
    # password=x, "api_key": "x", token: x
    (
        re.compile(rf"""(\b{_SECRET_NAME}["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,&;}}]+)""", re.I),
        rf"\1{REDACTED}",
    ),
    # scheme://user:password@host
    (re.compile(r"(://[^:/@\s]+:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a password, key or token masked."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    """Masks secrets in the formatted message (and freezes it, so no formatter sees the args)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (None outside a request) and ``request_tag`` (`` [id]`` or "")."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        record.request_id = request_id
        record.request_tag = f" [{request_id}]" if request_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (when known)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id := getattr(record, "request_id", None):
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


def logging_config(level: str = "info", log_format: LogFormat = "text") -> dict[str, Any]:
    """The ``dictConfig`` for the server: one stderr handler that every logger reaches."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "redact": {"()": RedactFilter},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id", "redact"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
        # uvicorn's loggers lose their own handlers and share ours.
        "loggers": {
            name: {"level": level.upper(), "handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(level: str = "info", log_format: LogFormat = "text") -> None:
    """Apply :func:`logging_config` to the process (called once by ``ollm serve``)."""
    logging.config.dictConfig(logging_config(level, log_format))
