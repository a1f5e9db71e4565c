"""Who is asking: the current-user dependency, session cookies and CSRF.

- Auth off (the default, on loopback): every request is the local user; any
  ``Authorization`` header is ignored (OpenAI clients always send some key).
- Auth on: ``Authorization: Bearer <api key>`` (or ``x-api-key: <api key>``, the header
  Anthropic's clients send the key in), or the HttpOnly, SameSite=Lax session
  cookie set by login. A cookie session is something a browser sends by itself, so unsafe
  methods on it need the double-submit CSRF check: the readable ``csrf_token`` cookie
  echoed in an ``X-CSRF-Token`` header (another site can make the browser send the cookie,
  but cannot read it). A bearer key is only ever sent on purpose, so it needs no token.

Failures are :class:`~ollm.errors.OllmError` subclasses, so every dialect answers in its
own error shape. This module reads services from ``app.state`` itself rather than through
:mod:`ollm.api.http.deps`, which builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request, Response

from ollm import security
from ollm.db.models import Role
from ollm.db.schemas import UserPublic
from ollm.errors import InvalidApiKeyError, NotAuthenticatedError, PermissionDeniedError
from ollm.services.accounts.service import AccountService
from ollm.settings import Settings

SESSION_COOKIE = "ollm_session"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BEARER = "bearer "
API_KEY_HEADER = "x-api-key"


class CsrfError(PermissionDeniedError):
    """A cookie-authenticated unsafe request without the matching CSRF token."""

    code = "csrf_failed"


@dataclass(frozen=True, slots=True)
class Principal:
    """The account behind a request and how it proved it."""

    user: UserPublic
    via: Literal["local", "session", "key"]
    session_token: str | None = None


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if there is one."""
    header = request.headers.get("authorization", "")
    if header[: len(_BEARER)].lower() != _BEARER:
        return None
    return header[len(_BEARER) :].strip() or None


def presented_api_key(request: Request) -> str | None:
    """The API key a request presents: ``Authorization: Bearer …`` or, failing that,
    ``x-api-key`` (Anthropic's clients send their key only there)."""
    return bearer_token(request) or request.headers.get(API_KEY_HEADER, "").strip() or None


def _csrf_ok(request: Request) -> bool:
    if request.method in SAFE_METHODS:
        return True
    return security.csrf_tokens_match(
        request.cookies.get(CSRF_COOKIE), request.headers.get(CSRF_HEADER)
    )


async def authenticate(request: Request) -> Principal:
    """The caller's account, or 401 (in the dialect's error shape) when auth is on and
    neither a valid key nor a valid session came along."""
    settings: Settings = request.app.state.settings
    if not settings.auth:
        # Cross-site writes were refused before any route (api/http/hosts.py).
        return Principal(request.app.state.local_user, "local")
    accounts: AccountService = request.app.state.accounts
    # What authentication accepts (or refuses) decides the caller's rate-limit bucket.
    verified = request.app.state.verified_credentials  # see install_rate_limit
    if (key := presented_api_key(request)) is not None:
        user = await accounts.user_for_key(key)
        verified.record("key", key, valid=user is not None)
        if user is None:
            raise InvalidApiKeyError("the API key is not valid (unknown, revoked or disabled)")
        return Principal(user, "key")
    token = request.cookies.get(SESSION_COOKIE)
    user = await accounts.user_for_session(token) if token else None
    if token:
        verified.record("session", token, valid=user is not None)
    if user is None:
        raise NotAuthenticatedError(
            "authentication required: log in, or send 'Authorization: Bearer <api key>'"
        )
    if not _csrf_ok(request):
        raise CsrfError(
            f"missing or wrong CSRF token: send the {CSRF_COOKIE} cookie's value in the "
            f"{CSRF_HEADER} header"
        )
    return Principal(user, "session", session_token=token)


def current_user(principal: Annotated[Principal, Depends(authenticate)]) -> UserPublic:
    """The caller's account (see :func:`authenticate`)."""
    return principal.user


def admin_user(user: Annotated[UserPublic, Depends(current_user)]) -> UserPublic:
    """The caller's account, which must be an admin (403 otherwise)."""
    if user.role != Role.ADMIN:
        raise PermissionDeniedError("this needs an admin account")
    return user


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
CurrentUser = Annotated[UserPublic, Depends(current_user)]
AdminUser = Annotated[UserPublic, Depends(admin_user)]


# -- cookies ------------------------------------------------------------------------------


def set_session_cookies(response: Response, request: Request, token: str, csrf: str) -> None:
    """Log the browser in: the HttpOnly session cookie and the readable CSRF cookie."""
    settings: Settings = request.app.state.settings
    max_age = settings.session_ttl_days * 86_400
    secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=secure,
        path="/",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="lax", secure=secure, path="/"
    )


def clear_session_cookies(response: Response) -> None:
    """Log the browser out."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="lax")
