"""``ollm users`` and ``ollm keys``: accounts and API keys, straight in the database.

These work on the database of ``OLLM_HOME`` (or ``OLLM_DATABASE_URL``) directly, with or
without a running server, and migrate it first if needed. Database modules are imported
inside the commands so that ``ollm --help`` stays quick.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.table import Table

from ollm.cli.common import print_error, print_table, stderr, stdout
from ollm.errors import OllmError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ollm.db.models import ApiKey

T = TypeVar("T")

users_app = typer.Typer(
    help="Manage accounts (directly in the database of OLLM_HOME).", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Manage API keys (directly in the database of OLLM_HOME).", no_args_is_help=True
)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="Data directory (OLLM_HOME).", show_default=False),
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def register_admin_commands(app: typer.Typer) -> None:
    """Attach ``users`` and ``keys`` to the main ``ollm`` app."""
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")


class CommandFailed(Exception):
    """A message for the user and the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _database_url(home: Path | None) -> str:
    from ollm.settings import load_settings

    try:
        settings = load_settings(home=home)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            print_error(f"invalid setting {field}: {error['msg']}")
        raise typer.Exit(2) from None
    assert settings.database_url is not None  # always filled in by validation
    return settings.database_url


def _in_database(home: Path | None, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Migrate the database, run ``work`` in one transaction, commit; report failures."""
    url = _database_url(home)

    async def run() -> T:
        from ollm.db import create_engine, create_sessionmaker, upgrade_database

        await upgrade_database(url)
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (CommandFailed, OllmError) as exc:
        print_error(str(exc))
        raise typer.Exit(getattr(exc, "exit_code", 1)) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandFailed("no password on standard input", exit_code=2)
        return password
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _validated(schema: type[T], **fields: object) -> T:
    try:
        return schema(**fields)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print_error(problems)
        raise typer.Exit(2) from None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


# -- users ------------------------------------------------------------------------------


@users_app.command("add")
def add_user(
    name: Annotated[str, typer.Argument(help="Username.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the account an admin.")] = False,
    password_stdin: PasswordStdinOption = False,
    home: HomeOption = None,
) -> None:
    """Create an account (the first account is always an admin)."""
    from ollm.db import crud
    from ollm.db.models import Role
    from ollm.db.schemas import UserCreate

    try:
        password = _read_password(password_stdin)
    except CommandFailed as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    user_in = _validated(UserCreate, username=name, password=password)

    async def work(session: AsyncSession) -> Role:
        first = await crud.count_users(session=session) == 0
        role = Role.ADMIN if admin or first else Role.USER
        new = user_in.model_copy(update={"role": role})
        return (await crud.create_user(session=session, user_in=new)).role

    role = _in_database(home, work)
    stderr().print(f"created {role.value} [bold]{user_in.username}[/bold]")


@users_app.command("list")
def list_users(home: HomeOption = None) -> None:
    """List every account."""
    from ollm.db import crud

    users = _in_database(home, lambda session: crud.list_users(session=session))
    table = Table("NAME", "ROLE", "STATUS", "CREATED", box=None, pad_edge=False)
    for user in users:
        status = "disabled" if user.disabled else "active"
        table.add_row(user.username, user.role.value, status, _when(user.created_at))
    print_table(stdout(), table)


RevokeKeysOption = Annotated[
    bool,
    typer.Option(
        "--revoke-keys/--keep-keys",
        help="Also revoke every API key of the account (a leaked password, a leaked key?).",
    ),
]


@users_app.command("passwd")
def set_password(
    name: Annotated[str, typer.Argument(help="Username.")],
    password_stdin: PasswordStdinOption = False,
    revoke_keys: RevokeKeysOption = False,
    home: HomeOption = None,
) -> None:
    """Set an account's password (its login sessions end; --revoke-keys ends its keys)."""
    from ollm.db import crud
    from ollm.db.schemas import UserUpdate

    try:
        password = _read_password(password_stdin)
    except CommandFailed as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    user_in = _validated(UserUpdate, password=password, revoke_keys=revoke_keys)

    async def work(session: AsyncSession) -> None:
        user = await crud.get_user_by_username(session=session, username=name)
        if user is None:
            raise CommandFailed(f"no user named {name!r}")
        await crud.update_user(session=session, user=user, user_in=user_in)

    _in_database(home, work)
    revoked = " and its API keys revoked" if revoke_keys else ""
    stderr().print(f"password changed for [bold]{name}[/bold]{revoked}")


# -- keys -------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(
    user: Annotated[str, typer.Option("--user", help="Account the key acts as.")],
    name: Annotated[str, typer.Option("--name", help="A label to tell keys apart.")] = "",
    home: HomeOption = None,
) -> None:
    """Create an API key and print it. It is shown this once only."""
    from ollm.db import crud
    from ollm.db.schemas import ApiKeyCreate

    key_in = _validated(ApiKeyCreate, name=name)

    async def work(session: AsyncSession) -> str:
        account = await crud.get_user_by_username(session=session, username=user)
        if account is None:
            raise CommandFailed(f"no user named {user!r}")
        return (await crud.create_api_key(session=session, user_id=account.id, key_in=key_in)).key

    key = _in_database(home, work)
    typer.echo(key)
    stderr().print("Save this key now: it cannot be shown again.")


@keys_app.command("list")
def list_keys(
    user: Annotated[str | None, typer.Option("--user", help="Only this account's keys.")] = None,
    home: HomeOption = None,
) -> None:
    """List API keys by prefix (the secrets are not stored)."""
    from ollm import security
    from ollm.db import crud

    async def work(session: AsyncSession) -> list[tuple[str, ApiKey]]:
        names = {u.id: u.username for u in await crud.list_users(session=session)}
        user_id = None
        if user is not None:
            user_id = next((i for i, n in names.items() if n == user), None)
            if user_id is None:
                raise CommandFailed(f"no user named {user!r}")
        keys = await crud.list_api_keys(session=session, user_id=user_id)
        return [(names.get(key.user_id, "?"), key) for key in keys]

    table = Table("PREFIX", "USER", "NAME", "CREATED", "LAST USED", "STATUS", box=None)
    for owner, key in _in_database(home, work):
        status = f"revoked {_when(key.revoked_at)}" if key.revoked_at else "active"
        table.add_row(
            security.display_prefix(key.prefix),
            owner,
            key.name or "-",
            _when(key.created_at),
            _when(key.last_used_at),
            status,
        )
    print_table(stdout(), table)


@keys_app.command("revoke")
def revoke_key(
    prefix: Annotated[str, typer.Argument(help="The key's prefix (as `keys list` shows it).")],
    home: HomeOption = None,
) -> None:
    """Revoke an API key: requests using it are refused from now on."""
    from ollm import security
    from ollm.db import crud

    async def work(session: AsyncSession) -> None:
        if await crud.revoke_api_key_by_prefix(session=session, prefix=prefix) is None:
            raise CommandFailed(f"no API key with prefix {prefix!r}")

    _in_database(home, work)
    stderr().print(f"revoked {security.display_prefix(security.normalize_prefix(prefix))}")
