"""A streaming replica of the test PostgreSQL, built by a test and removed afterwards.

Built the way an operator builds one with Debian's tools: `pg_basebackup -R` copies the
server into a scratch directory and writes the standby's connection into it, then a
postmaster of the server's major version serves the copy as a hot standby on a free
loopback port. The standby streams through a permanent replication slot of its own from
the base backup on, so the server keeps every WAL segment the standby has yet to receive,
through staged outages too; without one, a busy server recycles a segment the standby still
needs and the standby never streams again. The slot is dropped with the standby, and one
that a killed run left behind is dropped by the next run. The server's configuration is
read, never changed; what it lacks is reported with the fix.
"""

import contextlib
import getpass
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from .boot import free_port
from .databases import HOW_TO_START, POSTGRES_DSN

# As root, the copy belongs to and runs as this OS user: PostgreSQL refuses to run as root.
OS_USER = "postgres"
# However a test run ends (even killed), the standby shuts down after this many seconds.
LIFETIME = 1800
# Settings a hot standby must not set lower than its primary, or it refuses to start.
MIRRORED = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
# The standby's replication slot is this prefix and random hex digits. While the standby
# lives, a session on the server holds an advisory lock on the slot's name: a slot with the
# prefix, no WAL sender and a free lock belongs to a run that was killed.
SLOT_PREFIX = "cfs_replica_"
SLOT_LOCK = "hashtextextended(%s, 0)"
HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"
# Peer authentication on the socket works for the postgres OS user (so, for root) alone.
ALLOW_REPLICATION = {
    True: "the line Debian's default pg_hba.conf has, `local replication all peer`,",
    False: "`host replication postgres 127.0.0.1/32 trust` (this user is not postgres),",
}


def lsn(text: str) -> int:
    """A WAL position such as `0/3000148` (`pg_current_wal_lsn()::text`) as a number; of a
    consistency token (`0/3000148.<signature>`), the position it carries."""
    high, low = text.partition(".")[0].split("/")
    return int(high, 16) << 32 | int(low, 16)


def _server() -> dict[str, Any]:
    return psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN)


def _primary_settings() -> dict[str, str]:
    names = [
        *("wal_level", "max_replication_slots", "server_version_num"),
        *("unix_socket_directories", "hba_file", *MIRRORED),
    ]
    try:
        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", [names]
            ).fetchall()
            _drop_abandoned_slots(conn)
            (senders,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'"
            ).fetchone() or (0,)
            (slots,) = conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() or (0,)
    except psycopg.OperationalError as error:
        pytest.fail(
            f"The full tier needs postgresql on 127.0.0.1 and found none:\n  {error}\n"
            f"Start it with: {HOW_TO_START['postgresql']}",
            pytrace=False,
        )
    return {**dict(rows), "walsenders_in_use": str(senders), "slots_in_use": str(slots)}


def problems(settings: dict[str, str]) -> list[str]:
    """What keeps the server from being copied and streamed, each with its fix."""
    found = []
    if settings["wal_level"] not in ("replica", "logical"):
        found.append(
            f"wal_level is {settings['wal_level']}: set `wal_level = replica` in the server's "
            "postgresql.conf and restart it."
        )
    # The base backup takes two WAL senders (files and WAL), the standby then one.
    if int(settings["max_wal_senders"]) - int(settings["walsenders_in_use"]) < 2:
        found.append(
            f"{settings['walsenders_in_use']} of max_wal_senders = {settings['max_wal_senders']} "
            "are in use and a base backup needs two: raise `max_wal_senders` and restart."
        )
    if int(settings["max_replication_slots"]) <= int(settings["slots_in_use"]):
        found.append(
            f"all max_replication_slots = {settings['max_replication_slots']} are taken and "
            "the replica needs one for its whole life: raise `max_replication_slots` and restart."
        )
    return found


def _drop_abandoned_slots(conn: psycopg.Connection[Any]) -> None:
    """Drop the slots of killed runs (unused and unowned): each keeps the server's WAL from
    its position on, forever. A slot of a live run, its standby stopped or cut off for a
    test, has an owner and stays."""
    query = (
        "SELECT slot_name FROM pg_replication_slots WHERE starts_with(slot_name, %s) AND NOT active"
    )
    for (name,) in conn.execute(query, [SLOT_PREFIX]).fetchall():
        ((unowned,),) = conn.execute(f"SELECT pg_try_advisory_lock({SLOT_LOCK})", [name])
        if unowned:
            try:
                _drop_slot(conn, name, terminate=False)
            finally:
                conn.execute(f"SELECT pg_advisory_unlock({SLOT_LOCK})", [name])


def _drop_slot(conn: psycopg.Connection[Any], name: str, terminate: bool = True) -> None:
    """Drop the slot once no WAL sender uses it. Its standby stopped, the sender outlives it
    until it notices the closed connection: with `terminate`, it is ended after seconds;
    without, a slot in use stays."""
    query = "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s"
    patience, deadline = time.monotonic() + 5, time.monotonic() + 30
    while time.monotonic() < deadline:
        found = conn.execute(query, [name]).fetchall()
        if not found:
            return
        ((sender,),) = found
        if sender is None:
            # A WAL sender may take it between the two statements.
            with contextlib.suppress(psycopg.errors.ObjectInUse):
                conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
                return
        elif not terminate:
            return
        elif time.monotonic() > patience:
            conn.execute("SELECT pg_terminate_backend(%s)", [sender])
        time.sleep(0.05)
    raise AssertionError(f"The replica's replication slot {name} stays in use; drop it by hand.")


class _Slot:
    """The standby's replication slot, which pg_basebackup creates: owned from here to
    `drop()` by a session on the server that holds an advisory lock on its name."""

    def __init__(self) -> None:
        self.name = f"{SLOT_PREFIX}{secrets.token_hex(8)}"
        self._owner = psycopg.connect(
            POSTGRES_DSN, autocommit=True, connect_timeout=5, application_name=self.name
        )
        try:
            self._owner.execute(f"SELECT pg_advisory_lock({SLOT_LOCK})", [self.name])
        except BaseException:
            self._owner.close()
            raise

    def drop(self) -> None:
        """Once the standby stopped: drop the slot if it was made, then give up ownership
        (were the session ended meanwhile, the next run drops the slot)."""
        try:
            _drop_slot(self._owner, self.name)
        finally:
            self._owner.close()


def _bindir(settings: dict[str, str]) -> Path:
    """The standby must run the server's major version; Debian keeps each in its own dir."""
    major = int(settings["server_version_num"]) // 10000
    bindir = Path(f"/usr/lib/postgresql/{major}/bin")
    missing = [
        name for name in ("pg_basebackup", "postgres", "psql") if not (bindir / name).exists()
    ]
    if missing:
        pytest.fail(
            f"The replica needs PostgreSQL {major}'s {', '.join(missing)} in {bindir}.\n"
            f"Install Debian's package: apt-get install -y postgresql-{major}",
            pytrace=False,
        )
    return bindir


def _account() -> dict[str, Any]:
    """subprocess arguments that run a command as the owner of the replica's files."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        pytest.fail(
            f"Run as root, the replica runs as the OS user {OS_USER}, which does not exist.\n"
            "Debian's postgresql package creates it.",
            pytrace=False,
        )
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _replication_route(
    settings: dict[str, str], bindir: Path, account: dict[str, Any], env: dict[str, str]
) -> str:
    """How to reach the server for replication: its socket (Debian's default), else TCP."""
    server = _server()
    user, port = server.get("user", "postgres"), server.get("port", "5432")
    hosts = [d.strip() for d in settings["unix_socket_directories"].split(",") if d.strip()][:1]
    hosts.append(server.get("host", "127.0.0.1"))
    refusals = []
    for host in hosts:
        route = psycopg.conninfo.make_conninfo(host=host, port=port, user=user)
        probe = subprocess.run(
            [bindir / "psql", "-X", "-Atc", "IDENTIFY_SYSTEM", f"{route} replication=true"],
            capture_output=True,
            text=True,
            timeout=15,
            env=env,
            check=False,
            **account,
        )
        if probe.returncode == 0:
            return route
        refusals.append(f"  {route}: {probe.stderr.strip()}")
    pytest.fail(
        "The replica needs a replication connection to the server, which refuses them:\n"
        + "\n".join(refusals)
        + "\n"
        + f"Add {ALLOW_REPLICATION[bool(account) or getpass.getuser() == OS_USER]}"
        + f" to {settings['hba_file']}\nand reload: psql -h 127.0.0.1 -U postgres -c "
        + "'SELECT pg_reload_conf()' (.ci/run does both, as root).",
        pytrace=False,
    )


def _shutdown(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (clients disconnected), then immediate, then kill: 25 seconds at most."""
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


class Replica:
    """A hot standby of the test server; `stop()` and `start()` stage its outage."""

    def __init__(
        self,
        directory: Path,
        command: list[str],
        env: dict[str, str],
        lifetime: int = LIFETIME,
        slot: str = "",
        **account: Any,
    ):
        self.directory = directory
        # The replication slot on the primary that keeps the WAL the standby has yet to receive.
        self.slot = slot
        self.lifetime = lifetime
        self.port = int(command[command.index("-p") + 1])
        self.user = str(_server().get("user", "postgres"))
        self._command, self._env, self._account = command, env, account
        self._process: subprocess.Popen[bytes] | None = None
        # Settings a test changed while the standby runs, with their values before.
        self._changed: dict[str, str] = {}

    @property
    def log(self) -> Path:
        return self.directory / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string (psycopg) to `database` on the replica."""
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        """The service's replica URL (asyncpg) for `database`."""
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{database}"

    def fetch(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=5) as conn:
            return conn.execute(statement.encode()).fetchall()

    def replay_lsn(self) -> int:
        """The last WAL position replayed, comparable with `lsn()` of the primary's."""
        ((position,),) = self.fetch("SELECT pg_last_wal_replay_lsn()::text")
        return lsn(position)

    def pause_replay(self, timeout: float = 10) -> None:
        """Receive WAL but apply none of it, from the moment this returns."""
        self.fetch("SELECT pg_wal_replay_pause()")
        # Replay stops before its next record; until then one more could be applied.
        self._until(
            lambda: self.fetch("SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused",
            timeout,
            "replay to pause",
        )

    def resume_replay(self) -> None:
        self.fetch("SELECT pg_wal_replay_resume()")

    def configure(self, **settings: str | int) -> None:
        """Change the running standby's settings (ALTER SYSTEM, then a reload); `ready()`
        puts back what they were."""
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as conn:
            for name, value in settings.items():
                if name not in self._changed:
                    query = "SELECT setting FROM pg_settings WHERE name = %s"
                    ((before,),) = conn.execute(query, [name]).fetchall()
                    self._changed[name] = str(before)
                conn.execute(_alter_system(name, value))
            conn.execute("SELECT pg_reload_conf()")

    def cut_off(self, timeout: float = 30) -> None:
        """Cut the standby off from the primary, as a network partition does: its
        primary_conninfo (pg_basebackup wrote it) points at a closed port from now on, so
        its WAL receiver stops and every attempt to reconnect is refused. It keeps serving
        reads of what it replayed; its slot, unused meanwhile, keeps the primary's WAL from
        where it stopped. `reconnect()` (or `ready()`) ends the outage."""
        self.configure(primary_conninfo=f"host=127.0.0.1 port=1 user={self.user}")
        self._until(lambda: not self.streaming(), timeout, "the WAL receiver to stop")

    def reconnect(self, timeout: float = 60) -> None:
        """Put back every setting a test changed, and wait until the standby streams again."""
        if self._changed:
            self.configure(**self._changed)
            self._changed = {}
        self._until(self.streaming, timeout, "the replica to stream again")

    def streaming(self) -> bool:
        """Whether the standby's WAL receiver streams from the primary right now."""
        return bool(self.fetch("SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'"))

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start the postmaster; return once it answers in recovery and streams WAL."""
        if self.running:
            return
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                ["timeout", "--signal=INT", "--kill-after=15", str(self.lifetime), *self._command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=self._env,
                start_new_session=True,  # one process group: `timeout` and the postmaster
                **self._account,
            )
        query = (
            "SELECT pg_is_in_recovery() AND (SELECT status FROM pg_stat_wal_receiver) = 'streaming'"
        )
        self._until(lambda: bool(self.fetch(query)[0][0]), timeout, "the replica to stream")

    def stop(self) -> None:
        """Shut the postmaster down (clients cut off, port closed); `start()` brings it back."""
        if self._process is not None:
            _shutdown(self._process)
            self._process = None

    def ready(self) -> None:
        """Running, streaming and replaying, whatever the previous test did to it."""
        self.start()
        self.reconnect()
        self.resume_replay()

    def _until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                last = f"postgres exited with {self._process.returncode}"
                break
            try:
                if condition():
                    return
            except psycopg.OperationalError as error:
                last = str(error).strip()
            time.sleep(0.05)
        raise AssertionError(
            f"Gave up waiting for {what} ({last or f'not within {timeout}s'}); its log says:\n"
            + self.log.read_text(errors="replace")[-3000:]
        )


def _alter_system(name: str, value: str | int) -> sql.Composed:
    return sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(str(value)))


@contextmanager
def replica(
    timeout: float = 120, lifetime: int = LIFETIME, **settings: str | int
) -> Iterator[Replica]:
    """Yield a streaming hot standby of the test server; stop and delete it afterwards.

    `settings` are the standby's own PostgreSQL settings (`log_statement="all"`...).
    `lifetime`: seconds after which it shuts down by itself (a soak runs longer than a test).
    """
    primary = _primary_settings()
    found = problems(primary)
    if found:
        pytest.fail("The server cannot be replicated:\n" + "\n".join(found), pytrace=False)
    bindir = _bindir(primary)
    account = _account()
    slot = _Slot()
    directory = Path(tempfile.mkdtemp(prefix="cfs-replica-"))
    try:
        if account:
            os.chown(directory, account["user"], account["group"])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(directory),
            "LC_ALL": "C",
        }
        route = _replication_route(primary, bindir, account, env)
        data, sockets = directory / "data", directory / "socket"
        backup = subprocess.run(
            [
                bindir / "pg_basebackup",
                f"--pgdata={data}",
                "--write-recovery-conf",  # standby.signal and primary_conninfo
                "--wal-method=stream",
                "--create-slot",  # permanent, and primary_slot_name for the standby
                f"--slot={slot.name}",
                "--checkpoint=fast",
                "--no-sync",
                "--no-manifest",
                f"--dbname={route} application_name={directory.name}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
            **account,
        )
        if backup.returncode != 0:
            raise AssertionError(f"pg_basebackup failed:\n{backup.stdout}{backup.stderr}")
        # Debian keeps the configuration out of the data directory: the standby gets its own.
        (data / "postgresql.conf").write_text("# Settings: the command line.\n")
        (data / "pg_hba.conf").write_text(HBA)
        (data / "pg_ident.conf").write_text("")
        sockets.mkdir()
        if account:
            for path in (
                data / "postgresql.conf",
                data / "pg_hba.conf",
                data / "pg_ident.conf",
                sockets,
            ):
                os.chown(path, account["user"], account["group"])
        options = {
            "listen_addresses": "127.0.0.1",
            "hot_standby": "on",
            "shared_buffers": "16MB",
            "fsync": "off",  # a scratch copy: a crash loses nothing worth keeping
            "cluster_name": directory.name,
            **{name: primary[name] for name in MIRRORED},
            **settings,
        }
        command = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(free_port()),
            "-k",
            str(sockets),
        ]
        for name, value in options.items():
            command += ["-c", f"{name}={value}"]
        standby = Replica(directory, command, env, lifetime, slot.name, **account)
        try:
            standby.start(timeout)
            yield standby
        finally:
            standby.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        slot.drop()


def replica_fixtures(**settings: str | int) -> tuple[Any, Any]:
    """Fixtures for a conftest: one replica per test session, ready for each test.

        replica_server, replica = replica_fixtures()

    `replica_server` (session scope) builds it once (once per xdist worker); `replica`
    hands it to a test running, streaming and replaying, whatever the test before did.
    """

    @pytest.fixture(scope="session", name="replica_server")
    def server() -> Iterator[Replica]:
        with replica(120, **settings) as standby:
            yield standby

    @pytest.fixture(name="replica")
    def ready(replica_server: Replica) -> Replica:
        replica_server.ready()
        return replica_server

    return server, ready
