"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run, started on first use.

    If it cannot start, every test that needs it errors (with the reason): never skips.
    """
    server = PostgresServer.launch()
    try:
        yield server
    finally:
        server.stop()
