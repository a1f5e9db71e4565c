"""Accounts: users, API keys and login sessions.

Every function is keyword-only and leaves the transaction to the caller (flush, never
commit). Secrets are hashed by ``ollm.security``; nothing here returns a hash to show.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import delete, false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ollm import security
from ollm.db.errors import UsernameTakenError
from ollm.db.models import ApiKey, LoginSession, User, utcnow, valid_id
from ollm.db.schemas import ApiKeyCreate, UserCreate, UserUpdate
from ollm.db.usernames import username_key

# last_used_at is a hint for people, not an audit log: refresh it at most this often, so
# a busy key does not turn every request into a database write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


# -- users ------------------------------------------------------------------------------


async def create_user(*, session: AsyncSession, user_in: UserCreate) -> User:
    """Add an account; raises :class:`UsernameTakenError` if the name, or one that looks the
    same (:func:`~ollm.db.usernames.username_key`), is in use."""
    key = username_key(user_in.username)
    taken = await session.scalar(
        select(User.id).where((User.username == user_in.username) | (User.username_key == key))
    )
    if taken is not None:
        raise UsernameTakenError(
            f"username {user_in.username!r} is taken (or one that looks the same)",
            param="username",
        )
    # argon2 takes tens of milliseconds by design: off the event loop (cffi drops the GIL).
    password_hash = await asyncio.to_thread(security.hash_password, user_in.password)
    user = User(
        username=user_in.username,
        username_key=key,
        password_hash=password_hash,
        role=user_in.role,
    )
    session.add(user)
    await session.flush()
    return user


async def get_user(*, session: AsyncSession, user_id: int) -> User | None:
    """The account with this id, if any."""
    if not valid_id(user_id):
        return None
    return await session.get(User, user_id)


async def get_user_by_username(*, session: AsyncSession, username: str) -> User | None:
    """The account with this exact username, if any."""
    return await session.scalar(select(User).where(User.username == username))


async def list_users(*, session: AsyncSession) -> list[User]:
    """Every account, oldest first."""
    return list(await session.scalars(select(User).order_by(User.id)))


async def count_users(*, session: AsyncSession) -> int:
    """How many accounts exist (the first sign-up becomes admin)."""
    return await session.scalar(select(func.count()).select_from(User)) or 0


async def update_user(*, session: AsyncSession, user: User, user_in: UserUpdate) -> User:
    """Change role, disabled flag or password. A new password or disabling the account
    ends its login sessions."""
    if user_in.role is not None:
        user.role = user_in.role
    if user_in.disabled is not None:
        user.disabled = user_in.disabled
    if user_in.password is not None:
        user.password_hash = await asyncio.to_thread(security.hash_password, user_in.password)
    if user_in.password is not None or user_in.disabled:
        await delete_user_sessions(session=session, user_id=user.id)
    if user_in.revoke_keys:
        await revoke_user_keys(session=session, user_id=user.id)
    await session.flush()
    return user


async def authenticate(*, session: AsyncSession, username: str, password: str) -> User | None:
    """The account if the password is right and the account enabled, else None.

    Unknown and disabled accounts cost the same argon2 verification as real ones, so
    timing does not tell which usernames exist.
    """
    user = await get_user_by_username(session=session, username=username)
    known_hash = user.password_hash if user else None
    if not await asyncio.to_thread(security.verify_password, password, known_hash):
        return None
    assert user is not None  # verify_password is False without a hash
    if user.disabled:
        return None
    if security.password_needs_rehash(user.password_hash):
        user.password_hash = await asyncio.to_thread(security.hash_password, password)
        await session.flush()
    return user


# -- API keys ---------------------------------------------------------------------------


class CreatedApiKey(NamedTuple):
    """A new key's row and its secret (shown once, never stored)."""

    row: ApiKey
    key: str


async def create_api_key(
    *, session: AsyncSession, user_id: int, key_in: ApiKeyCreate
) -> CreatedApiKey:
    """Make a key for ``user_id``; only its hash and prefix are stored."""
    new = security.generate_api_key()
    row = ApiKey(user_id=user_id, prefix=new.prefix, key_hash=new.key_hash, name=key_in.name)
    session.add(row)
    await session.flush()
    return CreatedApiKey(row=row, key=new.key)


async def list_api_keys(
    *, session: AsyncSession, user_id: int | None, include_revoked: bool = True
) -> list[ApiKey]:
    """One user's keys (``user_id=None``: everyone's, for the admin CLI), oldest first."""
    statement = select(ApiKey).order_by(ApiKey.id)
    if user_id is not None:
        statement = statement.where(ApiKey.user_id == user_id)
    if not include_revoked:
        statement = statement.where(ApiKey.revoked_at.is_(None))
    return list(await session.scalars(statement))


async def get_api_key_by_prefix(*, session: AsyncSession, prefix: str) -> ApiKey | None:
    """The key with this prefix (``ollm-`` or a whole key accepted too), if any."""
    normalized = security.normalize_prefix(prefix)
    return await session.scalar(select(ApiKey).where(ApiKey.prefix == normalized))


async def revoke_api_key(*, session: AsyncSession, user_id: int, key_id: int) -> ApiKey | None:
    """Revoke one of ``user_id``'s keys; None if it is not theirs (or does not exist)."""
    if not valid_id(key_id):
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row


async def revoke_user_keys(*, session: AsyncSession, user_id: int) -> int:
    """Revoke every live key of ``user_id``; how many were revoked."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount or 0)


async def revoke_api_key_by_prefix(*, session: AsyncSession, prefix: str) -> ApiKey | None:
    """Revoke whichever key has this prefix (the admin CLI); None if there is none."""
    row = await get_api_key_by_prefix(session=session, prefix=prefix)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row


async def resolve_api_key(*, session: AsyncSession, key: str) -> User | None:
    """The enabled account a presented key belongs to, or None (unknown, malformed,
    revoked, or its account disabled). Records when the key was last used."""
    prefix = security.api_key_prefix(key)
    if prefix is None:
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None:
        return None
    if not security.token_matches(key.strip(), row.key_hash):
        return None
    user = await session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        await session.flush()
    return user


# -- login sessions ---------------------------------------------------------------------


class CreatedSession(NamedTuple):
    """A new login session's row and the token for the cookie (never stored)."""

    row: LoginSession
    token: str


async def create_session(*, session: AsyncSession, user_id: int, ttl: timedelta) -> CreatedSession:
    """Log ``user_id`` in for ``ttl``; the caller sets ``token`` as the cookie."""
    new = security.generate_session_token()
    row = LoginSession(user_id=user_id, token_hash=new.token_hash, expires_at=utcnow() + ttl)
    session.add(row)
    await session.flush()
    return CreatedSession(row=row, token=new.token)


async def resolve_session(
    *, session: AsyncSession, token: str, now: datetime | None = None
) -> User | None:
    """The enabled account behind an unexpired session token, or None."""
    now = now or utcnow()
    return await session.scalar(
        select(User)
        .join(LoginSession, LoginSession.user_id == User.id)
        .where(
            LoginSession.token_hash == security.hash_token(token),
            LoginSession.expires_at > now,
            User.disabled == false(),
        )
    )


async def delete_session(*, session: AsyncSession, token: str) -> bool:
    """Log out: forget this token. True if it existed."""
    result = await session.execute(
        delete(LoginSession).where(LoginSession.token_hash == security.hash_token(token))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def delete_user_sessions(*, session: AsyncSession, user_id: int) -> int:
    """End every login session of one account; returns how many there were."""
    result = await session.execute(delete(LoginSession).where(LoginSession.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_expired_sessions(*, session: AsyncSession, now: datetime | None = None) -> int:
    """Housekeeping: drop sessions past their expiry; returns how many."""
    result = await session.execute(
        delete(LoginSession).where(LoginSession.expires_at <= (now or utcnow()))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
