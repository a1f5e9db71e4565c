"""Errors the store raises on purpose; each maps to an HTTP status by its type."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from ollm.errors import OllmError, ServiceBusyError

# SQLITE_BUSY and SQLITE_LOCKED (primary codes; extended codes keep them in the low byte).
_SQLITE_BUSY_CODES = frozenset({5, 6})
# PostgreSQL: lock_not_available, deadlock_detected, serialization_failure.
_POSTGRES_BUSY_STATES = frozenset({"55P03", "40P01", "40001"})


class UsernameTakenError(OllmError):
    """An account with that username already exists."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "username_taken"


def busy_error(exc: DBAPIError) -> ServiceBusyError | None:
    """A 503 for a driver error that means "the database was busy, try again" (SQLite's
    busy timeout ran out behind another writer, a PostgreSQL lock or serialization
    failure), or None for any other error. Read from the driver's error code, not its text.
    """
    original = exc.orig
    sqlite_code = getattr(original, "sqlite_errorcode", None)
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    sqlite_busy = isinstance(sqlite_code, int) and sqlite_code & 0xFF in _SQLITE_BUSY_CODES
    if sqlite_busy or state in _POSTGRES_BUSY_STATES:
        return ServiceBusyError("the database is busy with another write; try again shortly")
    return None
