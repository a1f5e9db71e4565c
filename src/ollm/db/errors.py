"""Errors the store raises on purpose; each maps to an HTTP status by its type."""

from __future__ import annotations

from ollm.errors import OllmError


class UsernameTakenError(OllmError):
    """An account with that username already exists."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "username_taken"
