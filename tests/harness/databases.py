"""Scratch databases for rendered services: unique names, always dropped, nothing else touched.

PostgreSQL and MariaDB run on every machine here (see the README); SQLite needs only a
temporary directory. A test that needs a server and finds none fails with how to start it.
"""

import contextlib
import os
import secrets
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pymysql
import pytest

POSTGRES_DSN = os.environ.get("CFS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
HOW_TO_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mysql": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


def _unavailable(database: str, error: Exception) -> None:
    pytest.fail(
        f"The full tier needs {database} on 127.0.0.1 (see the README) and found none:\n"
        f"  {error}\nStart it with: {HOW_TO_START[database]}",
        pytrace=False,
    )


def postgres(statement: str) -> None:
    try:
        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement.encode())
    except psycopg.OperationalError as error:
        _unavailable("postgresql", error)


def mariadb(statement: str) -> list[tuple[object, ...]]:
    try:
        conn = pymysql.connect(**MARIADB, autocommit=True, connect_timeout=5)  # type: ignore[arg-type]
    except pymysql.err.OperationalError as error:
        _unavailable("mysql", error)
        raise
    with conn, conn.cursor() as cursor:
        cursor.execute(statement)
        return list(cursor.fetchall())


def check_server(database: str) -> None:
    """Fail early, with instructions, when the variant's database server is down."""
    if database == "postgresql":
        postgres("SELECT 1")
    elif database == "mysql":
        mariadb("SELECT 1")


def admin_url(database: str, workdir: Path) -> str:
    """What a rendered service's own tests get as DATABASE_URL: a server they may create in."""
    if database == "postgresql":
        info = psycopg.conninfo.conninfo_to_dict(POSTGRES_DSN)
        return f"postgresql+asyncpg://{info.get('user', 'postgres')}@127.0.0.1:5432/postgres"
    if database == "mysql":
        return "mysql+asyncmy://root@127.0.0.1:3306/mysql"
    return f"sqlite+aiosqlite:///{workdir}/unused.db"


@contextmanager
def scratch_database(database: str, label: str) -> Iterator[str]:
    """Yield the async URL of a new, empty database; drop it afterwards, whatever happened."""
    # The unique suffix survives every truncation: of the name, and of the MariaDB user.
    name = f"cfs_{label.replace('-', '_')}"[:49] + f"_{uuid.uuid4().hex[:10]}"
    if database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cfs-") as directory:
            yield f"sqlite+aiosqlite:///{directory}/{name}.db"
        return
    if database == "postgresql":
        postgres(f'CREATE DATABASE "{name}"')
        try:
            yield f"{admin_url(database, Path())[: -len('/postgres')]}/{name}"
        finally:
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    # MariaDB: a user of its own, so an outage can be staged for this database alone.
    user, password = _user(name), secrets.token_hex(12)
    mariadb(f"CREATE DATABASE `{name}`")
    mariadb(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    mariadb(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'")
    try:
        yield f"mysql+asyncmy://{user}:{password}@127.0.0.1:3306/{name}"
    finally:
        mariadb(f"DROP DATABASE IF EXISTS `{name}`")
        mariadb(f"DROP USER IF EXISTS '{user}'@'%'")


@dataclass(frozen=True)
class Roles:
    owner: str  # DATABASE_OWNER_URL: owns the tables, migrates
    service: str  # DATABASE_URL: reads and writes rows, nothing else

    def env(self) -> dict[str, str]:
        if self.owner == self.service:  # SQLite: one file, no roles
            return {"DATABASE_URL": self.service}
        return {"DATABASE_URL": self.service, "DATABASE_OWNER_URL": self.owner}


@contextmanager
def two_roles(
    bin_dir: Path, project: Path, package: str, database: str, url: str
) -> Iterator[Roles]:
    """An owner and a service role of their own for `url`'s scratch database, made by the
    render's own command as its README shows (`python -m <package>.kit.migrations.roles`),
    dropped afterwards with the database (PostgreSQL's roles belong to the whole server).
    SQLite has no roles: both URLs are the file's."""
    if database == "sqlite":
        yield Roles(owner=url, service=url)
        return
    name, parts = _name(url), urlsplit(url)
    suffix = name[-10:]
    names = {"owner": f"cfs_o_{suffix}", "service": f"cfs_s_{suffix}"}
    where = f"{parts.hostname}:{parts.port}/{name}"
    roles = Roles(
        **{
            role: f"{parts.scheme}://{user}:{secrets.token_hex(12)}@{where}"
            for role, user in names.items()
        }
    )
    admin = f"{parts.scheme}://{'postgres' if database == 'postgresql' else 'root'}@{where}"
    try:
        made = subprocess.run(
            [str(bin_dir / "python"), "-m", f"{package}.kit.migrations.roles"],
            cwd=project,
            env={"DATABASE_ADMIN_URL": admin, **roles.env(), "PYTHONPATH": "src"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        yield roles
    finally:
        if database == "postgresql":
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # first: it holds grants
            for user in names.values():
                postgres(f'DROP ROLE IF EXISTS "{user}"')
        else:
            for user in names.values():
                mariadb(f"DROP USER IF EXISTS '{user}'@'%'")


def connected_users(database: str, url: str) -> set[str]:
    """The roles (users) with a session on `url`'s database now."""
    name = _name(url)
    if database == "postgresql":
        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
    else:
        rows = [
            (str(user),)
            for (user,) in mariadb(
                f"SELECT DISTINCT user FROM information_schema.processlist WHERE db = '{name}'"
            )
        ]
    return {str(user) for (user,) in rows}


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _user(name: str) -> str:
    """MariaDB user names hold 32 characters: the label's start and the unique suffix."""
    return name[:21] + name[-11:]


def _user_of(url: str) -> str:
    """The MariaDB user `url` connects as: its own, or the scratch database's."""
    return urlsplit(url).username or _user(_name(url))


def cut_off(database: str, url: str) -> None:
    """A real outage for one database: sessions end and new connections are refused."""
    name = _name(url)
    if database == "postgresql":
        postgres(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        return
    user = _user_of(url)
    mariadb(f"ALTER USER '{user}'@'%' ACCOUNT LOCK")
    for (session_id,) in mariadb(
        f"SELECT id FROM information_schema.processlist WHERE user = '{user}'"
    ):
        with contextlib.suppress(pymysql.err.OperationalError):  # it may have ended already
            mariadb(f"KILL {int(str(session_id))}")


def reconnect(database: str, url: str) -> None:
    name = _name(url)
    if database == "postgresql":
        postgres(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    else:
        mariadb(f"ALTER USER '{_user_of(url)}'@'%' ACCOUNT UNLOCK")
