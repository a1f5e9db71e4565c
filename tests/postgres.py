"""A throwaway PostgreSQL server on loopback, for the store's tests.

``initdb`` into a fresh temporary directory, ``pg_ctl start`` on a free port of 127.0.0.1
(its Unix socket in the same directory), and ``pg_ctl stop`` plus removal at the end.
PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
system user that Debian's package creates, or as an ``ollm-pg`` system user made here.

The binaries are found in ``$OLLM_TEST_PG_BINDIR`` (``make test`` sets it from
``scripts/ensure-postgres.sh``), then Debian's ``/usr/lib/postgresql/<N>/bin``, then PATH.
Anything that goes wrong raises :class:`PostgresUnavailable`: tests error, never skip.

Run ``python tests/postgres.py`` to start one by hand; it prints the URL and waits.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "ollm"
FALLBACK_SYSTEM_USER = "ollm-pg"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started (the message says why and what to do)."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``, newest major version first."""
    candidates: list[Path] = []
    if explicit := os.environ.get("OLLM_TEST_PG_BINDIR"):
        candidates.append(Path(explicit))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise PostgresUnavailable(
        "PostgreSQL's initdb was not found; run scripts/ensure-postgres.sh "
        "(or `make test`, which runs it) to install Debian's postgresql package."
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_account() -> pwd.struct_passwd | None:
    """The unprivileged account to run as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SYSTEM_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
         FALLBACK_SYSTEM_USER],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return pwd.getpwnam(FALLBACK_SYSTEM_USER)


@dataclass
class PostgresServer:
    """One running cluster; ``url(database)`` gives an asyncpg URL for SQLAlchemy."""

    bindir: Path
    root: Path
    port: int
    account: pwd.struct_passwd | None = None
    _running: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (trust auth on loopback)."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new, empty database on this server; returns its URL."""
        import asyncpg  # the driver the application uses; no extra client needed

        name = f"test_{uuid.uuid4().hex[:16]}"
        connection = await asyncpg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, database="postgres"
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url(name)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.account is not None:
            kwargs = {
                "user": self.account.pw_uid,
                "group": self.account.pw_gid,
                "extra_groups": [],
            }
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            cwd=self.root,
            **kwargs,  # type: ignore[arg-type]
        )

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            raise PostgresUnavailable(
                f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )

    def start(self) -> None:
        """``initdb`` then ``pg_ctl start``, waiting until the server accepts connections."""
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)
        self._check(
            self._run(
                "initdb", "-D", str(self.datadir), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ),
            "initdb",
        )  # fmt: skip
        # fsync off: the cluster is thrown away, so durability only costs time here.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        result = self._run(
            "pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile),
            "-w", "-t", str(START_TIMEOUT_S), "-o", options,
        )  # fmt: skip
        self._running = result.returncode == 0
        self._check(result, "pg_ctl start")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        try:
            if self._running:
                self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w")
                self._running = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def launch(cls) -> PostgresServer:
        """Find the binaries, make a directory the server account owns, and start."""
        bindir = find_bindir()
        account = _server_account()
        # Not pytest's tmp_path: that lives under a 0700 directory the server account
        # cannot enter. The socket path must also stay short (Unix limit ~107 bytes).
        root = Path(tempfile.mkdtemp(prefix="ollm-pg-"))
        server = cls(bindir=bindir, root=root, port=free_port(), account=account)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        return server


if __name__ == "__main__":
    server = PostgresServer.launch()
    print(server.url(), flush=True)
    try:
        input("PostgreSQL is running; press Enter to stop it.\n")
    finally:
        server.stop()
