"""The store's tests run twice: on SQLite and on a real PostgreSQL server.

Each test gets a fresh, migrated database of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ollm import security
from ollm.db import create_engine, create_sessionmaker, upgrade_database
from ollm.db.models import User
from ollm.db.schemas import UserCreate

DIALECTS = ["sqlite", "postgresql"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with minimal cost: these tests are about the store, not the hash strength
    (tests/unit/test_security.py checks the real parameters)."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    dummy = hasher.hash("dummy")
    monkeypatch.setattr(security, "_hasher", lambda: hasher)
    monkeypatch.setattr(security, "_dummy_hash", lambda: dummy)


def sqlite_url(directory: Path) -> str:
    """The URL of a SQLite database file in ``directory``."""
    return f"sqlite+aiosqlite:///{directory / 'ollm.db'}"


@pytest.fixture(params=DIALECTS)
async def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with nothing in it yet (not even migrations), on either dialect."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    server = request.getfixturevalue("postgres_server")
    return await server.create_database()


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A fresh database at the latest migration."""
    await upgrade_database(empty_database_url)
    return empty_database_url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


async def _make_user(session: AsyncSession, username: str, password: str = "password-1") -> User:
    """Create and commit an account (the tests' usual first step)."""
    from ollm.db import crud

    user = await crud.create_user(
        session=session, user_in=UserCreate(username=username, password=password)
    )
    await session.commit()
    return user


@pytest.fixture
async def alice(session: AsyncSession) -> User:
    return await _make_user(session, "alice")


@pytest.fixture
async def bob(session: AsyncSession) -> User:
    return await _make_user(session, "bob")
