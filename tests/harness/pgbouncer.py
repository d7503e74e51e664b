"""A real PgBouncer in front of the local PostgreSQL, started and stopped by a test.

Debian's `pgbouncer` binary runs directly (the system's service is never touched) on a
free loopback port, from a scratch directory that is removed afterwards. It is
configured as a user would configure it for a FastAPI service: transaction pooling and
otherwise PgBouncer's defaults (so, like Debian's own configuration, no
`ignore_startup_parameters`). Authentication is `trust`, as the test server's is.

With `record=True` PgBouncer reaches the server through a relay that notes the text of
every statement its server connections send (simple queries and Parse messages), so a
test can see what went through PgBouncer, and what did not.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


# What transaction pooling must never carry: settings and locks that outlive the
# transaction, on a server connection other clients get next. PgBouncer's own SETs of the
# parameters it tracks per client (application_name, client_encoding...) are not these.
SESSION_LEVEL = re.compile(
    r"^\s*(RESET\b|DISCARD\b|SET\s+(?!LOCAL\b|TRANSACTION\b)(SESSION\s+)?"
    r"(?!(application_name|client_encoding|datestyle|timezone|standard_conforming_strings)\b))"
    r"|\bpg_(try_)?advisory_(un)?lock(_shared)?\s*\(|\bset_config\s*\(.*\bfalse\s*\)",
    re.IGNORECASE | re.DOTALL,
)
# asyncpg turns JIT off around its type introspection and back on right after it.
_JIT_OFF = re.compile(r"set_config\('jit', 'off', false\)")
_JIT_BACK = re.compile(r"set_config\('jit', \$1, false\)")
_INTROSPECTION = re.compile(r"WITH RECURSIVE typeinfo_tree")


@dataclass(frozen=True)
class PgBouncer:
    port: int
    user: str
    log: Path
    # Statements PgBouncer sent to the server (with `record=True`), in order, each with
    # the number of the server connection that carried it.
    sent: list[tuple[int, str]] = field(default_factory=list)

    def statements(self) -> list[str]:
        return [statement for _, statement in list(self.sent)]

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

    def session_level(self) -> list[str]:
        """What of `sent` outlives its transaction (SESSION_LEVEL).

        But asyncpg's own JIT switch around its type introspection, when the server
        connection carried nothing but the introspection between JIT off and JIT back
        on: no other client's statement ran with it."""
        carried: dict[int, list[str]] = {}
        for number, statement in list(self.sent):
            carried.setdefault(number, []).append(statement)
        found: list[str] = []
        for statements in carried.values():
            switched_off = False
            for before, statement in zip(["", *statements], statements, strict=False):
                if statement == before:
                    continue  # an unnamed statement is parsed again to run it
                if _JIT_OFF.search(statement):
                    switched_off = True
                elif switched_off and _JIT_BACK.search(statement):
                    switched_off = False
                elif switched_off and not _INTROSPECTION.search(statement):
                    found.append("JIT off (asyncpg's introspection) under: " + statement)
                elif SESSION_LEVEL.search(statement):
                    found.append(statement)
            if switched_off:
                found.append("JIT left off by asyncpg's introspection")
        return found


def _server() -> tuple[str, int]:
    server = psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN)
    return str(server.get("host", "127.0.0.1")), int(str(server.get("port", 5432)))


def _config(
    directory: Path, port: int, user: str, server: tuple[str, int], settings: dict[str, str | int]
) -> Path:
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    options = {
        "listen_addr": "127.0.0.1",
        "listen_port": port,
        "unix_socket_dir": "",  # TCP only: the default socket directory may not be writable
        "auth_type": "trust",
        "auth_file": directory / "userlist.txt",
        "admin_users": user,
        # Roles not in the auth file (the service roles tests create) are looked up on the
        # server as this user, as a deployment with auth_query does.
        "auth_user": user,
        "pool_mode": "transaction",
        "max_client_conn": 500,
        **settings,
    }
    lines = [
        "[databases]",
        # Any database name goes to the server's database of that name.
        f"* = host={server[0]} port={server[1]}",
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


class _Frontend:
    """Reads what a client sends a PostgreSQL server, message by message: the start-up
    packets (no type byte), then typed messages, of which it keeps the statements."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.started = False

    def feed(self, data: bytes) -> list[str]:
        self.buffer += data
        statements: list[str] = []
        while True:
            head = 5 if self.started else 4
            if len(self.buffer) < head:
                return statements
            kind = bytes(self.buffer[:1]) if self.started else b""
            end = head - 4 + int.from_bytes(self.buffer[head - 4 : head], "big")
            if len(self.buffer) < end:
                return statements
            payload = bytes(self.buffer[head:end])
            del self.buffer[:end]
            if not self.started:
                self.started = payload[:4] == (196608).to_bytes(4, "big")  # protocol 3.0
            elif kind == b"Q":  # a simple query
                statements.append(payload.split(b"\0", 1)[0].decode(errors="replace"))
            elif kind == b"P":  # Parse: the statement's name, then its text
                statements.append(payload.split(b"\0", 2)[1].decode(errors="replace"))


def _relay(
    client: socket.socket, server: tuple[str, int], sent: list[tuple[int, str]], number: int
) -> None:
    """Carry one of PgBouncer's server connections, noting the statements it sends."""
    upstream = socket.create_connection(server)

    def back() -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                client.sendall(data)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    backwards = threading.Thread(target=back, daemon=True)
    backwards.start()
    frontend = _Frontend()
    with contextlib.suppress(OSError):
        while data := client.recv(65536):
            upstream.sendall(data)
            sent.extend((number, statement) for statement in frontend.feed(data))
    with contextlib.suppress(OSError):
        upstream.shutdown(socket.SHUT_WR)
    backwards.join(timeout=10)
    client.close()
    upstream.close()


@contextmanager
def _recording_relay(
    server: tuple[str, int], sent: list[tuple[int, str]]
) -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def accept() -> None:
        number = 0
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            number += 1
            relay = threading.Thread(
                target=_relay, args=(client, server, sent, number), daemon=True
            )
            relay.start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield "127.0.0.1", listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


@contextmanager
def pgbouncer(
    timeout: float = 10,
    lifetime: int = LIFETIME,
    *,
    record: bool = False,
    **settings: str | int,
) -> Iterator[PgBouncer]:
    """Yield a PgBouncer in transaction mode in front of the test PostgreSQL.

    `settings` go to its [pgbouncer] section as they are (`default_pool_size=1`,
    `pool_mode="session"`, `ignore_startup_parameters="statement_timeout"`...).
    `lifetime`: seconds after which it exits by itself (a soak runs longer than a test).
    `record`: note every statement it sends to the server (`PgBouncer.sent`).
    """
    executable = binary()
    check_server("postgresql")
    user = str(psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN).get("user", "postgres"))
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="cfs-pgbouncer-"))
    sent: list[tuple[int, str]] = []
    with contextlib.ExitStack() as stack:
        server = _server()
        if record:
            server = stack.enter_context(_recording_relay(server, sent))
        yield from _run(
            executable, directory, port, user, server, sent, timeout, lifetime, settings
        )


def _run(
    executable: str,
    directory: Path,
    port: int,
    user: str,
    server: tuple[str, int],
    sent: list[tuple[int, str]],
    timeout: float,
    lifetime: int,
    settings: dict[str, str | int],
) -> Iterator[PgBouncer]:
    try:
        config = _config(directory, port, user, server, settings)
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
            yield PgBouncer(port=port, user=user, log=log, sent=sent)
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
