"""``ollm users`` and ``ollm keys`` against a real SQLite database in a temporary OLLM_HOME."""

from __future__ import annotations

import asyncio
import re

import pytest
from typer.testing import CliRunner

from ollm.cli.main import app
from ollm.db import create_engine, create_sessionmaker, crud

KEY = re.compile(r"^ollm-([0-9a-f]{12})_\S+$")


@pytest.fixture
def ollm(tmp_path, monkeypatch):
    """Run ``ollm ARGS`` with OLLM_HOME in a temporary directory; return the result."""
    monkeypatch.setenv("OLLM_HOME", str(tmp_path))
    monkeypatch.delenv("OLLM_DATABASE_URL", raising=False)

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(app, list(args), input=input)

    return invoke


def resolve(tmp_path, key: str) -> str | None:
    """Which username a key authenticates as, asked of the database directly."""

    async def run() -> str | None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ollm.db'}")
        try:
            async with create_sessionmaker(engine)() as session:
                user = await crud.resolve_api_key(session=session, key=key)
                return user.username if user else None
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_users_add_list_and_passwd(ollm, tmp_path):
    result = ollm("users", "add", "alice", "--password-stdin", input="secret-pw-1\n")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ollm.db").exists()
    assert ollm("users", "add", "bob", "--password-stdin", input="secret-pw-2\n").exit_code == 0

    listing = ollm("users", "list")
    assert listing.exit_code == 0
    rows = {line.split()[0]: line.split()[1] for line in listing.stdout.splitlines()[1:]}
    assert rows == {"alice": "admin", "bob": "user"}  # the first account is an admin
    assert "secret-pw" not in listing.output

    again = ollm("users", "add", "alice", "--password-stdin", input="another-pw\n")
    assert again.exit_code == 1 and "taken" in again.output
    short = ollm("users", "add", "carol", "--password-stdin", input="short\n")
    assert short.exit_code == 2 and "password" in short.output

    assert ollm("users", "passwd", "bob", "--password-stdin", input="new-pw-123\n").exit_code == 0
    missing = ollm("users", "passwd", "nobody", "--password-stdin", input="new-pw-123\n")
    assert missing.exit_code == 1 and "nobody" in missing.output


def test_users_add_prompts_for_the_password_twice(ollm):
    result = ollm("users", "add", "dave", "--admin", input="password-9\npassword-9\n")
    assert result.exit_code == 0, result.output
    assert "password-9" not in result.stdout


def test_keys_create_list_and_revoke(ollm, tmp_path):
    ollm("users", "add", "alice", "--password-stdin", input="secret-pw-1\n")
    created = ollm("keys", "create", "--user", "alice", "--name", "laptop")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    match = KEY.match(key)
    assert match, created.stdout
    prefix = match[1]
    assert resolve(tmp_path, key) == "alice"

    listing = ollm("keys", "list")
    assert listing.exit_code == 0
    assert f"ollm-{prefix}" in listing.stdout and "laptop" in listing.stdout
    assert "active" in listing.stdout and key not in listing.stdout

    revoked = ollm("keys", "revoke", f"ollm-{prefix}")
    assert revoked.exit_code == 0, revoked.output
    assert resolve(tmp_path, key) is None
    assert "revoked" in ollm("keys", "list", "--user", "alice").stdout

    assert ollm("keys", "revoke", "0123456789ab").exit_code == 1
    assert ollm("keys", "create", "--user", "nobody").exit_code == 1


def test_bad_database_url_is_reported(ollm, monkeypatch):
    monkeypatch.setenv("OLLM_DATABASE_URL", "mysql://somewhere/db")
    result = ollm("users", "list")
    assert result.exit_code == 2 and "database_url" in result.output
