"""AccountService: sign-up, login sessions, API keys and user administration.

Each method is one short transaction over :mod:`ollm.db.crud` and returns ``Public``
schemas, never ORM rows. Cookies, headers and CSRF are the API layer's business
(:mod:`ollm.api.http.auth`); this module only deals in users, tokens and keys.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ollm.db import crud
from ollm.db.models import Role
from ollm.db.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from ollm.errors import (
    AccountNotFoundError,
    AuthDisabledError,
    InvalidCredentialsError,
    InvalidRequestError,
    SignupClosedError,
)
from ollm.services.accounts.login_throttle import LoginThrottle
from ollm.settings import Settings


class LoggedIn(NamedTuple):
    """A new login session: the account and the token for its cookie."""

    user: UserPublic
    token: str


class AccountService:
    """Accounts over the database; built once per app by the lifespan."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessions
        self.settings = settings
        self.login_throttle = LoginThrottle(
            max_failures=settings.login_max_failures, lockout_seconds=settings.login_lockout
        )

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            yield session

    @property
    def _session_ttl(self) -> timedelta:
        return timedelta(days=self.settings.session_ttl_days)

    # -- the local user (auth off) ---------------------------------------------------

    async def ensure_local_user(self) -> UserPublic:
        """The account that owns every chat when auth is off, created on first start.

        It is an admin with a random password nobody knows: it cannot log in when auth
        is turned on later, and its chats stay its own.
        """
        name = self.settings.local_username
        async with self._transaction() as session:
            user = await crud.get_user_by_username(session=session, username=name)
            if user is None:
                password = secrets.token_urlsafe(32)
                user_in = UserCreate(username=name, password=password, role=Role.ADMIN)
                user = await crud.create_user(session=session, user_in=user_in)
            return UserPublic.model_validate(user)

    def _require_auth(self) -> None:
        if not self.settings.auth:
            raise AuthDisabledError(
                "this server runs without authentication (start it with --auth or "
                "OLLM_AUTH=true to use accounts)"
            )

    # -- sign-up, login, sessions ------------------------------------------------------

    async def _has_accounts(self, session: AsyncSession) -> bool:
        # The local user of auth-off mode does not count: the first person to sign up
        # after auth is turned on still becomes the admin.
        users = await crud.list_users(session=session)
        return any(user.username != self.settings.local_username for user in users)

    async def has_accounts(self) -> bool:
        """Whether anyone has signed up yet (the next sign-up is the admin if not)."""
        async with self._sessions() as session:
            return await self._has_accounts(session)

    async def signup(self, *, username: str, password: str) -> LoggedIn:
        """Create an account and log it in. The first account becomes an admin; later
        ones need ``allow_signup``."""
        self._require_auth()
        async with self._transaction() as session:
            others = await self._has_accounts(session)
            if others and not self.settings.allow_signup:
                raise SignupClosedError("sign-up is turned off on this server; ask an admin")
            role = Role.USER if others else Role.ADMIN
            user_in = UserCreate(username=username, password=password, role=role)
            user = await crud.create_user(session=session, user_in=user_in)
            created = await crud.create_session(
                session=session, user_id=user.id, ttl=self._session_ttl
            )
            return LoggedIn(UserPublic.model_validate(user), created.token)

    async def login(self, *, username: str, password: str, address: str | None = None) -> LoggedIn:
        """Check the password and open a session (401 without saying what was wrong;
        429 while the username or ``address`` is locked for too many failures)."""
        self._require_auth()
        self.login_throttle.begin(username=username, address=address)
        async with self._transaction() as session:
            user = await crud.authenticate(session=session, username=username, password=password)
            if user is None:
                raise InvalidCredentialsError("wrong username or password")
            created = await crud.create_session(
                session=session, user_id=user.id, ttl=self._session_ttl
            )
        self.login_throttle.succeeded(username=username)
        return LoggedIn(UserPublic.model_validate(user), created.token)

    async def logout(self, *, token: str) -> None:
        """End the session of ``token`` (nothing happens if it is already gone)."""
        async with self._transaction() as session:
            await crud.delete_session(session=session, token=token)

    async def user_for_session(self, token: str) -> UserPublic | None:
        """The enabled account behind an unexpired session token, or None."""
        async with self._sessions() as session:
            user = await crud.resolve_session(session=session, token=token)
            return UserPublic.model_validate(user) if user is not None else None

    async def user_for_key(self, key: str) -> UserPublic | None:
        """The enabled account a bearer key belongs to, or None (notes when it was used)."""
        async with self._transaction() as session:
            user = await crud.resolve_api_key(session=session, key=key)
            return UserPublic.model_validate(user) if user is not None else None

    # -- API keys ------------------------------------------------------------------------

    async def create_key(self, *, user_id: int, key_in: ApiKeyCreate) -> ApiKeyCreated:
        """A new key for ``user_id``; the answer is the only place its secret appears."""
        async with self._transaction() as session:
            created = await crud.create_api_key(session=session, user_id=user_id, key_in=key_in)
            public = ApiKeyPublic.model_validate(created.row)
            return ApiKeyCreated(**public.model_dump(), key=created.key)

    async def list_keys(self, *, user_id: int) -> list[ApiKeyPublic]:
        """The user's keys, revoked ones included, oldest first."""
        async with self._sessions() as session:
            rows = await crud.list_api_keys(session=session, user_id=user_id)
            return [ApiKeyPublic.model_validate(row) for row in rows]

    async def revoke_key(self, *, user_id: int, key_id: int) -> ApiKeyPublic:
        """Revoke one of the user's keys; 404 if it is not theirs."""
        async with self._transaction() as session:
            row = await crud.revoke_api_key(session=session, user_id=user_id, key_id=key_id)
            if row is None:
                raise AccountNotFoundError(f"no API key with id {key_id}")
            return ApiKeyPublic.model_validate(row)

    # -- administration ------------------------------------------------------------------

    async def list_users(self) -> list[UserPublic]:
        """Every account, oldest first."""
        async with self._sessions() as session:
            return [UserPublic.model_validate(u) for u in await crud.list_users(session=session)]

    async def update_user(
        self, *, actor: UserPublic, user_id: int, changes: UserUpdate
    ) -> UserPublic:
        """An admin changes someone's role, disabled flag or password.

        Admins cannot disable or demote themselves, so a server never loses its last way in
        by accident.
        """
        if user_id == actor.id and (
            changes.disabled or (changes.role is not None and changes.role != Role.ADMIN)
        ):
            raise InvalidRequestError(
                "you cannot disable your own account or remove your own admin role"
            )
        async with self._transaction() as session:
            user = await crud.get_user(session=session, user_id=user_id)
            if user is None:
                raise AccountNotFoundError(f"no user with id {user_id}")
            user = await crud.update_user(session=session, user=user, user_in=changes)
            return UserPublic.model_validate(user)
