"""Alembic, driven from code: ``upgrade_database(url)`` brings a database to the latest
revision. The server calls it at start-up and ``ollm users``/``ollm keys`` before they
touch the database; running it on an up-to-date database does nothing.

A new revision, after changing the models: ``python -m ollm.db.migrate "what changed"``
compares the models with a scratch SQLite database at head and writes
``migrations/versions/NNNN_what_changed.py``. Review it; full-text structures and
anything dialect-specific are written by hand (see ``0001_initial.py``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url

from ollm.db.session import create_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the package's migrations (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision the package ships."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "no migrations found"
    return head


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply every pending migration to the database at ``url``, in one transaction."""
    if (path := _sqlite_path(url)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, alembic_config(url), revision)
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (None before the first migration)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current)
    finally:
        await engine.dispose()


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (its directory is created on first use), else None."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def write_revision(message: str) -> Path:
    """Autogenerate the next numbered revision from the models (see the module doc)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'head.db'}"
        asyncio.run(upgrade_database(url))
        script = command.revision(
            alembic_config(url),
            message,
            autogenerate=True,
            rev_id=f"{int(head_revision()) + 1:04d}",
        )
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit('usage: python -m ollm.db.migrate "what changed"')
    print(write_revision(sys.argv[1]))
