"""Scratch PostgreSQL databases: unique names, always dropped, nothing else touched."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

ADMIN_DSN = os.environ.get("CFS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
HOW_TO_START = (
    "The full tier needs PostgreSQL at {dsn} (trust auth, a user that may CREATE DATABASE).\n"
    "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
    "(or point CFS_POSTGRES_DSN at another server)."
)


def admin(statement: str) -> None:
    try:
        with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement.encode())
    except psycopg.OperationalError as error:
        pytest.fail(f"{HOW_TO_START.format(dsn=ADMIN_DSN)}\n({error})", pytrace=False)


def server_url() -> str:
    """The server as the rendered service spells it, with the `postgres` database."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
    user = info.get("user", "postgres")
    host, port = info.get("host", "127.0.0.1"), info.get("port", "5432")
    return f"postgresql+asyncpg://{user}@{host}:{port}"


@contextmanager
def scratch_database(label: str) -> Iterator[str]:
    """Yield the async URL of a new database; drop it afterwards, whatever happened."""
    name = f"cfs_{label.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url()}/{name}"
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
