"""``/api/v1/auth``: sign-up, login, logout, and who am I. Thin: the service decides,
these routes only move tokens in and out of cookies."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request, Response, status

from ollm import security
from ollm.api.http.auth import (
    CurrentPrincipal,
    clear_session_cookies,
    set_session_cookies,
)
from ollm.api.http.deps import AccountsDep, SettingsDep
from ollm.api.v1 import schemas as s
from ollm.errors import SignupThrottledError
from ollm.services.accounts.service import LoggedIn

router = APIRouter(prefix="/auth", tags=["auth"])


def _logged_in(request: Request, response: Response, logged_in: LoggedIn) -> s.LoginResponse:
    csrf = security.generate_csrf_token()
    set_session_cookies(response, request, logged_in.token, csrf)
    return s.LoginResponse(user=logged_in.user, csrf_token=csrf)


@router.get("/config")
async def config(settings: SettingsDep, accounts: AccountsDep) -> s.AuthConfig:
    """Whether auth is on and whether sign-up is open (no login needed)."""
    signup = settings.auth and (settings.allow_signup or not await accounts.has_accounts())
    return s.AuthConfig(auth=settings.auth, signup=signup)


@router.post("/signup", status_code=status.HTTP_201_CREATED)
async def signup(
    body: s.SignupRequest, request: Request, response: Response, accounts: AccountsDep
) -> s.LoginResponse:
    """Create an account and log it in (the first account becomes an admin)."""
    limiter = request.app.state.signup_limiter
    address = request.client.host if request.client is not None else "unknown"
    if limiter is not None and (wait := limiter.acquire(address)) > 0:
        retry_after = max(1, math.ceil(wait))
        raise SignupThrottledError(
            f"too many sign-ups from this address: try again in {retry_after} s",
            retry_after=retry_after,
        )
    logged_in = await accounts.signup(username=body.username, password=body.password)
    return _logged_in(request, response, logged_in)


@router.post("/login")
async def login(
    body: s.LoginRequest, request: Request, response: Response, accounts: AccountsDep
) -> s.LoginResponse:
    """Start a session: sets the session cookie and the CSRF cookie."""
    address = request.client.host if request.client is not None else None
    logged_in = await accounts.login(
        username=body.username, password=body.password, address=address
    )
    return _logged_in(request, response, logged_in)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentPrincipal, accounts: AccountsDep) -> Response:
    """End this session and clear its cookies."""
    if principal.session_token is not None:
        await accounts.logout(token=principal.session_token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@router.get("/me")
async def me(principal: CurrentPrincipal, settings: SettingsDep) -> s.Me:
    """The caller's account."""
    return s.Me(user=principal.user, auth=settings.auth, via=principal.via)
