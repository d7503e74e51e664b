"""A real PgBouncer in front of the local PostgreSQL, started and stopped by a test.

Debian's `pgbouncer` binary runs directly (the system's service is never touched) on a
free loopback port, from a scratch directory that is removed afterwards. It is
configured as a user would configure it for a FastAPI service: transaction pooling and
otherwise PgBouncer's defaults (so, like Debian's own configuration, no
`ignore_startup_parameters`). Authentication is `trust`, as the test server's is.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .boot import free_port
from .databases import POSTGRES_DSN, check_server

HOW_TO_INSTALL = "apt-get install -y pgbouncer"
# PgBouncer refuses to run as root; as root the harness asks it to switch to this user.
UNPRIVILEGED_USER = "nobody"
# However a test ends (even killed), PgBouncer exits by itself after this many seconds.
LIFETIME = 1800


def binary() -> str:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin"
    found = shutil.which("pgbouncer", path=path)
    if found is None:
        pytest.fail(
            "The full tier runs a real PgBouncer and found no `pgbouncer` binary.\n"
            f"Install Debian's package (the service need not run): {HOW_TO_INSTALL}",
            pytrace=False,
        )
    return found


@dataclass(frozen=True)
class PgBouncer:
    port: int
    user: str
    log: Path

    def dsn(self, database: str) -> str:
        """A libpq connection string (psycopg) to `database` through PgBouncer."""
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        """The service's DATABASE_URL for `database` through PgBouncer."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def show(self, what: str) -> list[dict[str, Any]]:
        """`SHOW POOLS`, `SHOW CLIENTS`... on PgBouncer's admin console, as rows."""
        # The console speaks only the simple query protocol: a client-side-binding cursor.
        with (
            psycopg.connect(self.dsn("pgbouncer"), autocommit=True, connect_timeout=5) as conn,
            psycopg.ClientCursor(conn) as cursor,
        ):
            cursor.execute(f"SHOW {what}".encode())
            names = [column.name for column in cursor.description or []]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _config(directory: Path, port: int, user: str, settings: dict[str, str | int]) -> Path:
    server = psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN)
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    options = {
        "listen_addr": "127.0.0.1",
        "listen_port": port,
        "unix_socket_dir": "",  # TCP only: the default socket directory may not be writable
        "auth_type": "trust",
        "auth_file": directory / "userlist.txt",
        "admin_users": user,
        "pool_mode": "transaction",
        "max_client_conn": 500,
        **settings,
    }
    lines = [
        "[databases]",
        # Any database name goes to the server's database of that name.
        f"* = host={server.get('host', '127.0.0.1')} port={server.get('port', 5432)}",
        "[pgbouncer]",
        *(f"{name} = {value}" for name, value in options.items()),
    ]
    config = directory / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    return config


def _wait_until_listening(
    process: subprocess.Popen[bytes], port: int, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"pgbouncer did not listen in {timeout}s:\n{log.read_text()}")
        time.sleep(0.05)


@contextmanager
def pgbouncer(
    timeout: float = 10, lifetime: int = LIFETIME, **settings: str | int
) -> Iterator[PgBouncer]:
    """Yield a PgBouncer in transaction mode in front of the test PostgreSQL.

    `settings` go to its [pgbouncer] section as they are (`default_pool_size=1`,
    `pool_mode="session"`, `ignore_startup_parameters="statement_timeout"`...).
    `lifetime`: seconds after which it exits by itself (a soak runs longer than a test).
    """
    executable = binary()
    check_server("postgresql")
    user = str(psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN).get("user", "postgres"))
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="cfs-pgbouncer-"))
    try:
        config = _config(directory, port, user, settings)
        command = [executable, str(config)]
        if os.geteuid() == 0:
            # A RELOAD re-reads the files as that user; they hold no secret.
            directory.chmod(0o755)
            for path in directory.iterdir():
                path.chmod(0o644)
            command[1:1] = ["-u", UNPRIVILEGED_USER]
        log = directory / "pgbouncer.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["timeout", "--kill-after=5", str(lifetime), *command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one process group: `timeout` and PgBouncer
            )
        try:
            _wait_until_listening(process, port, log, timeout)
            yield PgBouncer(port=port, user=user, log=log)
        finally:
            # SIGTERM is PgBouncer's immediate shutdown: it waits for no client.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
