"""Migrations: idempotent, reversible, in step with the models; SQLite pragmas; PG indexes."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from ollm.db import create_engine, upgrade_database
from ollm.db.fts import is_search_object
from ollm.db.migrate import alembic_config, current_revision, head_revision
from ollm.db.models import Base
from ollm.db.session import SQLITE_BUSY_TIMEOUT_MS

pytestmark = pytest.mark.anyio

TABLES = {"users", "api_keys", "sessions", "chats", "messages"}


def _not_search(name, type_, parent_names) -> bool:
    return not is_search_object(name)


async def test_upgrade_twice_is_a_no_op(empty_database_url):
    assert await current_revision(empty_database_url) is None
    await upgrade_database(empty_database_url)
    await upgrade_database(empty_database_url)
    assert await current_revision(empty_database_url) == head_revision()
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert tables >= TABLES


async def test_models_match_the_migrations(database_url):
    def diff(connection):
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": _not_search}
        )
        return compare_metadata(context, Base.metadata)

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


async def test_downgrade_to_nothing_and_back(database_url):
    def run(connection, action, revision):
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        action(config, revision)

    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run, command.downgrade, "base")
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables & TABLES == set()
            await connection.run_sync(run, command.upgrade, "head")
    finally:
        await engine.dispose()
    assert await current_revision(database_url) == head_revision()


async def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'ollm.db'}"
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            pragma = lambda name: connection.scalar(text(f"PRAGMA {name}"))  # noqa: E731
            assert (await pragma("journal_mode")).lower() == "wal"
            assert await pragma("foreign_keys") == 1
            assert await pragma("busy_timeout") == SQLITE_BUSY_TIMEOUT_MS
    finally:
        await engine.dispose()
    # WAL is a property of the file: a plain connection without our pragmas sees it too.
    with sqlite3.connect(tmp_path / "ollm.db") as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_postgres_search_uses_the_gin_indexes(postgres_server):
    url = await postgres_server.create_database()
    await upgrade_database(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SET enable_seqscan = off"))
            plans = {}
            for table, column in (("messages", "content"), ("chats", "title")):
                rows = await connection.execute(
                    text(
                        f"EXPLAIN SELECT 1 FROM {table} WHERE to_tsvector('simple', {column}) "
                        "@@ to_tsquery('simple', 'word:*')"
                    )
                )
                plans[table] = "\n".join(row[0] for row in rows)
    finally:
        await engine.dispose()
    assert "ix_messages_content_fts" in plans["messages"]
    assert "ix_chats_title_fts" in plans["chats"]
