"""Scratch databases for rendered services: unique names, always dropped, nothing else touched.

PostgreSQL and MariaDB run on every machine here (see the README); SQLite needs only a
temporary directory. A test that needs a server and finds none fails with how to start it.
"""

import contextlib
import os
import secrets
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def _user(name: str) -> str:
    """MariaDB user names hold 32 characters: the label's start and the unique suffix."""
    return name[:21] + name[-11:]


def cut_off(database: str, url: str) -> None:
    """A real outage for one database: sessions end and new connections are refused."""
    name = _name(url)
    if database == "postgresql":
        postgres(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        postgres(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        return
    user = _user(name)
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
        mariadb(f"ALTER USER '{_user(name)}'@'%' ACCOUNT UNLOCK")
