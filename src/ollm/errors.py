"""One exception tree. ``OllmError`` and its children mean "safe to show the user".

Each class carries the HTTP status it maps to and a stable machine-readable ``code``;
API layers map errors by type, never by matching message text.
"""

from __future__ import annotations

from typing import Any


class OllmError(Exception):
    """Base of every error whose message may be shown to the client."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.details = details


class InvalidRequestError(OllmError):
    """The request is well-formed JSON but asks for something impossible."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    """The prompt (plus at least one generated token) does not fit the context window."""

    code = "context_length_exceeded"


class NotFoundError(OllmError):
    """The thing asked for does not exist (or is not the caller's: told the same way)."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    """No model of that name is known."""

    code = "model_not_found"


class TooManyRequestsError(OllmError):
    """A caller asked too often; ``retry_after`` seconds until it may ask again."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(TooManyRequestsError):
    """Every slot and waiting place is taken; try again later."""

    code = "queue_full"


class SignupThrottledError(TooManyRequestsError):
    """Too many sign-ups from one address (each costs a password hash and a row)."""

    code = "too_many_signups"


class ServiceBusyError(OllmError):
    """Shared storage stayed busy past its timeout (another long write); nothing was
    changed, retry after ``retry_after`` seconds."""

    status_code = 503
    error_type = "server_error"
    code = "busy"

    def __init__(self, message: str, *, retry_after: int = 2) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelLoadError(OllmError):
    """The model file exists but could not be loaded."""

    status_code = 500
    error_type = "server_error"
    code = "model_load_failed"


class EngineError(OllmError):
    """The engine failed while generating (reported to the client as a server error)."""

    status_code = 500
    error_type = "server_error"
    code = "engine_error"


class ShuttingDownError(OllmError):
    """The server is stopping and admits no new work."""

    status_code = 503
    error_type = "server_error"
    code = "shutting_down"


class InvalidModelNameError(InvalidRequestError):
    """A model name that is not of the form ``[host/][namespace/]name[:tag]`` in safe characters."""

    code = "invalid_model_name"


class ModelProtectedError(InvalidRequestError):
    """The model cannot be deleted or overwritten (it ships with ollm)."""

    code = "model_protected"


class PullError(OllmError):
    """A pull failed upstream: the hub was unreachable, refused, or sent bad data."""

    status_code = 502
    error_type = "server_error"
    code = "pull_failed"


class DigestMismatchError(PullError):
    """The downloaded file's sha256 differs from the one the hub announced; it was discarded."""

    code = "digest_mismatch"


# -- accounts --------------------------------------------------------------------------


class NotAuthenticatedError(OllmError):
    """No valid session or API key came with a request that needs one."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "not_authenticated"


class InvalidApiKeyError(NotAuthenticatedError):
    """The bearer key is unknown, malformed, revoked, or its account disabled."""

    code = "invalid_api_key"


class InvalidCredentialsError(NotAuthenticatedError):
    """Wrong username or password (deliberately not saying which)."""

    code = "invalid_credentials"


class PermissionDeniedError(OllmError):
    """Authenticated, but not allowed to do this."""

    status_code = 403
    error_type = "invalid_request_error"
    code = "permission_denied"


class SignupClosedError(PermissionDeniedError):
    """Sign-ups are turned off on this server."""

    code = "signup_disabled"


class AuthDisabledError(InvalidRequestError):
    """Accounts and logins are not used: the server runs without auth."""

    code = "auth_disabled"


class AccountNotFoundError(NotFoundError):
    """No user or key with that id (or not one the caller may see)."""


# -- chats -----------------------------------------------------------------------------


class ChatNotFoundError(NotFoundError):
    """No such chat — or not the caller's, which is told the same way."""

    code = "chat_not_found"


class MessageNotFoundError(NotFoundError):
    """No such message in this chat."""

    code = "message_not_found"


class ReplyInProgressError(OllmError):
    """The chat already has a reply being generated."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "reply_in_progress"
