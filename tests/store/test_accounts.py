"""Users, passwords, API keys and login sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ollm import security
from ollm.db import crud
from ollm.db.errors import UsernameTakenError
from ollm.db.models import ApiKey, LoginSession, Role, User, utcnow
from ollm.db.schemas import ApiKeyCreate, ApiKeyPublic, UserCreate, UserPublic, UserUpdate

pytestmark = pytest.mark.anyio

HOUR = timedelta(hours=1)


async def test_usernames_are_unique(session, alice):
    with pytest.raises(UsernameTakenError):
        await crud.create_user(
            session=session, user_in=UserCreate(username="alice", password="another-pw")
        )
    # The database enforces it too, for a writer that skips the check.
    session.add(User(username="alice", password_hash="x"))
    with pytest.raises(IntegrityError):
        await session.flush()
    await session.rollback()
    assert [u.username for u in await crud.list_users(session=session)] == ["alice"]


async def test_public_schema_hides_the_hash(session, alice):
    public = UserPublic.model_validate(alice).model_dump()
    assert public["username"] == "alice" and public["role"] == Role.USER
    assert "password_hash" not in public and public["created_at"].tzinfo is not None


async def test_authenticate_right_wrong_unknown_and_disabled(session, alice, monkeypatch):
    assert await crud.authenticate(session=session, username="alice", password="password-1")
    assert await crud.authenticate(session=session, username="alice", password="nope") is None

    checked: list[str] = []
    real_verify = security._verify
    monkeypatch.setattr(security, "_verify", lambda pw, h: checked.append(h) or real_verify(pw, h))
    assert await crud.authenticate(session=session, username="mallory", password="x") is None
    assert len(checked) == 1, "an unknown user must cost one argon2 verification too"

    await crud.update_user(session=session, user=alice, user_in=UserUpdate(disabled=True))
    await session.commit()
    assert await crud.authenticate(session=session, username="alice", password="password-1") is None
    assert len(checked) == 2


async def test_update_role_and_password_ends_sessions(session, alice):
    created = await crud.create_session(session=session, user_id=alice.id, ttl=HOUR)
    await crud.update_user(
        session=session,
        user=alice,
        user_in=UserUpdate(role=Role.ADMIN, password="new-password"),
    )
    await session.commit()
    assert (await crud.get_user(session=session, user_id=alice.id)).role is Role.ADMIN
    assert await crud.authenticate(session=session, username="alice", password="new-password")
    assert await crud.authenticate(session=session, username="alice", password="password-1") is None
    assert await crud.resolve_session(session=session, token=created.token) is None


async def test_count_and_list_users(session, alice, bob):
    assert await crud.count_users(session=session) == 2
    assert [u.username for u in await crud.list_users(session=session)] == ["alice", "bob"]
    assert (await crud.get_user_by_username(session=session, username="bob")).id == bob.id
    assert await crud.get_user_by_username(session=session, username="carol") is None


async def test_api_key_create_resolve_and_revoke(session, alice, bob):
    created = await crud.create_api_key(
        session=session, user_id=alice.id, key_in=ApiKeyCreate(name="laptop")
    )
    await session.commit()
    row = created.row
    assert created.key.startswith(f"ollm-{row.prefix}_")
    assert created.key not in row.key_hash and row.last_used_at is None
    assert "key_hash" not in ApiKeyPublic.model_validate(row).model_dump()

    assert (await crud.resolve_api_key(session=session, key=created.key)).id == alice.id
    await session.commit()
    assert (await session.get(ApiKey, row.id)).last_used_at is not None
    assert await crud.resolve_api_key(session=session, key=created.key + "x") is None
    assert await crud.resolve_api_key(session=session, key="ollm-000000000000_" + "a" * 43) is None
    assert await crud.resolve_api_key(session=session, key="not a key") is None

    # Bob cannot revoke Alice's key, or even tell it exists.
    assert await crud.revoke_api_key(session=session, user_id=bob.id, key_id=row.id) is None
    assert await crud.list_api_keys(session=session, user_id=bob.id) == []
    revoked = await crud.revoke_api_key(session=session, user_id=alice.id, key_id=row.id)
    await session.commit()
    assert revoked is not None and revoked.revoked_at is not None
    assert await crud.resolve_api_key(session=session, key=created.key) is None
    assert [k.id for k in await crud.list_api_keys(session=session, user_id=alice.id)] == [row.id]
    assert await crud.list_api_keys(session=session, user_id=alice.id, include_revoked=False) == []


async def test_api_key_revoke_by_prefix_and_disabled_owner(session, alice):
    first = await crud.create_api_key(session=session, user_id=alice.id, key_in=ApiKeyCreate())
    second = await crud.create_api_key(session=session, user_id=alice.id, key_in=ApiKeyCreate())
    await session.commit()
    revoked = await crud.revoke_api_key_by_prefix(
        session=session, prefix=f"ollm-{first.row.prefix}"
    )
    assert revoked is not None and revoked.id == first.row.id
    assert await crud.revoke_api_key_by_prefix(session=session, prefix="ffffffffffff") is None
    assert (await crud.resolve_api_key(session=session, key=second.key)).id == alice.id

    await crud.update_user(session=session, user=alice, user_in=UserUpdate(disabled=True))
    await session.commit()
    assert await crud.resolve_api_key(session=session, key=second.key) is None


async def test_sessions_resolve_expire_and_delete(session, alice, bob):
    live = await crud.create_session(session=session, user_id=alice.id, ttl=HOUR)
    other = await crud.create_session(session=session, user_id=bob.id, ttl=HOUR)
    await session.commit()
    assert live.token not in live.row.token_hash
    assert (await crud.resolve_session(session=session, token=live.token)).id == alice.id
    assert (await crud.resolve_session(session=session, token=other.token)).id == bob.id
    assert await crud.resolve_session(session=session, token="forged") is None
    later = utcnow() + 2 * HOUR
    assert await crud.resolve_session(session=session, token=live.token, now=later) is None

    assert await crud.delete_session(session=session, token=live.token)
    assert not await crud.delete_session(session=session, token=live.token)
    await session.commit()
    assert await crud.resolve_session(session=session, token=live.token) is None
    assert await crud.delete_expired_sessions(session=session, now=later) == 1
    await session.commit()
    assert await crud.resolve_session(session=session, token=other.token) is None


async def test_deleting_a_user_cascades_to_keys_and_sessions(session, alice):
    await crud.create_api_key(session=session, user_id=alice.id, key_in=ApiKeyCreate())
    await crud.create_session(session=session, user_id=alice.id, ttl=HOUR)
    await session.commit()
    await session.delete(alice)
    await session.commit()
    assert (await session.scalars(select(ApiKey))).all() == []
    assert (await session.scalars(select(LoginSession))).all() == []
