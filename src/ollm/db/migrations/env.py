"""Alembic's environment for ollm: one metadata, both dialects, async drivers.

``ollm.db.migrate.upgrade_database`` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line (for writing new
revisions) gets ``sqlalchemy.url`` from ``-x url=...`` or the config and connects itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from ollm.db.fts import is_search_object
from ollm.db.models import Base

config = context.config
target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # Full-text tables, shadow tables and indexes are written by hand in the revisions;
    # without this, autogenerate would propose dropping them.
    return not is_search_object(name)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_name=_include_name,
        # SQLite cannot ALTER most things: later revisions use batch mode there.
        render_as_batch=True,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url", ""
    )


def run_with_connection(connection: Connection) -> None:
    """Run the pending revisions on an open connection."""
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_with_new_engine() -> None:
    """Connect with the async driver named in the URL, then run the revisions."""
    from ollm.db.session import create_engine

    engine = create_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run_with_connection(connection)
else:
    asyncio.run(run_with_new_engine())
