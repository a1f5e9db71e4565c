"""One object for ``app.state``: the engine, its session factory, and start-up chores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ollm.db import crud
from ollm.db.migrate import upgrade_database
from ollm.db.session import create_engine, create_sessionmaker


@dataclass(frozen=True)
class Database:
    """An open database. Build it with :meth:`open` at start-up, :meth:`close` at exit."""

    url: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        """Migrate to the latest schema, connect, and mark replies a crash left
        ``streaming`` as ``interrupted`` (their text is kept).

        That last step assumes one ollm server per database: a second server sharing
        it would see the first one's live replies marked interrupted.
        """
        if migrate:
            await upgrade_database(url)
        engine = create_engine(url)
        database = cls(url=url, engine=engine, sessionmaker=create_sessionmaker(engine))
        async with database.transaction() as session:
            await crud.interrupt_streaming(session=session)
        return database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on success and rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
