"""Two database roles (`kit/migrations/roles.py`, `kit/db/roles.py`): the owner migrates,
the service's role reads and writes rows and can do nothing else, and production will
not serve as a superuser or as the owner. On the real servers, each role a test's own."""

import base64
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from service.kit.db.engine import DatabaseManager
from service.kit.db.roles import privileged
from service.kit.jobs.runner import connect_direct
from service.kit.migrations.roles import create_roles, grant_service
from service.kit.migrations.startup import upgrade_on_startup
from service.kit.migrations.verifiers import native_password, scram_sha_256
from service.settings import Settings
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from .databases import BACKEND, server_url
from .roles import Roles, run
from .test_migrations import _with_revisions

# What the server says when a role lacks a privilege.
DENIED = {"postgresql": r"permission denied|must be owner", "mysql": "command denied"}
# Statements that change the schema: each must be refused to the service role.
SCHEMA_CHANGES = {
    "create": "CREATE TABLE intruder (id INTEGER)",
    "alter": "ALTER TABLE gadget ADD COLUMN extra INTEGER",
    "drop": "DROP TABLE gadget",
    "truncate": "TRUNCATE TABLE gadget",
}

WIDGET = "CREATE TABLE widget (id INTEGER PRIMARY KEY, name VARCHAR(20))"


@pytest.mark.servers
async def test_the_service_role_reads_and_writes_rows_of_every_table(
    roles: Roles, settings: Settings, tmp_path: Path
) -> None:
    """`relic` (the administrator's) and `gadget` (the owner's) were there before the
    roles ran again; `widget` comes with a migration afterwards, run
    as the owner like `alembic upgrade head`, with no grant of its own; `gizmo` the owner
    creates by hand."""
    cfg = _with_revisions(tmp_path, ("widget", WIDGET))
    await upgrade_on_startup(roles.settings(settings), cfg)
    # And one the owner creates by hand, outside any migration: default privileges.
    await run(roles.owner, "CREATE TABLE gizmo (id INTEGER PRIMARY KEY, name VARCHAR(20))")
    for table in ("relic", "gadget", "widget", "gizmo"):
        *_, rows = await run(
            roles.service,
            f"INSERT INTO {table} (id, name) VALUES (1, 'a')",
            f"UPDATE {table} SET name = 'b' WHERE id = 1",
            f"SELECT name FROM {table}",
            f"DELETE FROM {table} WHERE id = 1",
            f"SELECT count(*) FROM {table}",
        )
        assert rows == [(0,)]
    if BACKEND.name == "postgresql":  # MariaDB's tables have no owner
        (owners,) = await run(
            roles.admin,
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = current_schema()",
        )
        assert owners == [(roles.owner.username,)]


@pytest.mark.servers
@pytest.mark.parametrize("change", sorted(SCHEMA_CHANGES))
async def test_the_service_role_cannot_change_the_schema(roles: Roles, change: str) -> None:
    with pytest.raises(DBAPIError) as caught:
        await run(roles.service, SCHEMA_CHANGES[change])
    assert re.search(DENIED[BACKEND.name], str(caught.value)), caught.value
    # The owner may: the refusal is the role's, not the statement's.
    await run(roles.owner, SCHEMA_CHANGES[change])


@pytest.mark.servers
@pytest.mark.parametrize("who", ["owner", "admin"])
async def test_production_refuses_to_serve_as_the_owner_or_a_superuser(
    roles: Roles, settings: Settings, who: str
) -> None:
    url = getattr(roles, who)
    production = roles.settings(
        settings, database_url=url, environment="production", cursor_secret="s" * 32
    )
    db = DatabaseManager(production)
    try:
        with pytest.raises(SystemExit) as caught:
            await db.connect()
    finally:
        await db.disconnect()
    message = str(caught.value)
    assert "\n" not in message
    assert f"DATABASE_URL connects as {url.username!r}" in message
    assert "DATABASE_OWNER_URL at the owner" in message
    # The service's own role serves.
    db = DatabaseManager(roles.settings(settings, environment="production", cursor_secret="s" * 32))
    try:
        await db.connect()
    finally:
        await db.disconnect()


@pytest.mark.postgresql
async def test_the_owner_sets_the_timeouts_pgbouncer_needs_and_the_service_only_reads_them(
    roles: Roles, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind PgBouncer the timeouts are the database's settings: the migration sets them
    as the owner; the service's start-up changes nothing (its role may not) and warns
    when they differ from its settings. (Server connections PgBouncer opened before a
    change keep the old values until it replaces them: the service's role connects
    first here after the change.)"""
    behind = roles.settings(
        settings,
        db_behind_pgbouncer=True,
        database_direct_url=roles.owner.set(
            username=roles.service.username, password=roles.service.password
        ),
        db_statement_timeout_ms=4321,
    )
    engine = create_async_engine(roles.owner, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await grant_service(conn, behind)
    finally:
        await engine.dispose()
    (timeout,) = await run(roles.service, "SHOW statement_timeout")
    assert timeout == [("4321ms",)]
    changed = behind.model_copy(update={"db_statement_timeout_ms": 999})
    db = DatabaseManager(changed)
    with caplog.at_level(logging.WARNING):
        try:
            await db.connect()
        finally:
            await db.disconnect()
    assert "statement_timeout is 4321 ms on the server, not 999 ms" in caplog.text
    (timeout,) = await run(roles.service, "SHOW statement_timeout")
    assert timeout == [("4321ms",)]
    # Nor could it: only the owner (of the database) sets them.
    with pytest.raises(DBAPIError, match="must be owner of database"):
        await run(roles.service, f'ALTER DATABASE "{roles.admin.database}" SET work_mem = 64')


@pytest.mark.sqlite
async def test_sqlite_has_no_roles_to_refuse_or_grant(settings: Settings) -> None:
    """A file has no roles: DATABASE_OWNER_URL is refused with the reason, the start-up
    check finds nothing to refuse, and a migration has nothing to grant."""
    with pytest.raises(ValidationError, match="a SQLite file has no roles"):
        Settings(database_url=settings.database_url, database_owner_url="sqlite:///owner.db")
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            assert await privileged(conn) is None
            await grant_service(conn, settings)
    finally:
        await engine.dispose()


@pytest.mark.postgresql
async def test_the_jobs_worker_connects_as_the_service_role(
    roles: Roles, settings: Settings
) -> None:
    """The worker's own connection (LISTEN, past any pooler) is the service's role on the
    server, never the owner's, whose URL the settings also hold when it migrates."""
    direct = roles.owner.set(username=roles.service.username, password=roles.service.password)
    connection = await connect_direct(roles.settings(settings, database_direct_url=direct))
    try:
        assert await connection.fetchval("SELECT current_user") == roles.service.username
    finally:
        await connection.close()


@pytest.mark.servers
async def test_the_roles_command_never_sends_a_password_in_plain_text(
    roles: Roles, settings: Settings
) -> None:
    """Statement logs, `pg_stat_statements` and MariaDB's general log keep what the
    client sent: the roles are given a server's own form of each password instead."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append(f"{statement} {parameters!r}")

    engine = create_async_engine(roles.admin, poolclass=NullPool)
    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with engine.begin() as conn:
            await create_roles(conn, roles.settings(settings))
    finally:
        await engine.dispose()
    assert any(" PASSWORD " in statement for statement in sent), sent
    for password in (roles.owner.password, roles.service.password):
        assert password and not [s for s in sent if password in s]


# Passwords PostgreSQL prepares differently (RFC 4013's SASLprep): ASCII as it is,
# characters mapped to a space or to nothing, compatibility forms normalized, and ones
# SASLprep prohibits (an ASCII control beside a non-ASCII letter) used as raw bytes.
PASSWORDS = ["plain-ascii_123", "pässwörd", "a\u00a0b\u00adc", "ｆｕｌｌ", "x\u0007é", "\u05d0a"]


@pytest.mark.postgresql
@pytest.mark.parametrize("password", PASSWORDS)
async def test_a_scram_verifier_is_the_one_postgresql_makes(password: str) -> None:
    """PostgreSQL hashes a plain password itself; given its salt and iterations, the
    kit's verifier is the same, so the role logs in with the password as before."""
    name = f"v_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(server_url(), poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL password_encryption = 'scram-sha-256'"))
            await conn.exec_driver_sql(
                f"CREATE ROLE {name} PASSWORD '{password.replace(chr(39), chr(39) * 2)}'"
            )
            made = await conn.scalar(
                text("SELECT rolpassword FROM pg_authid WHERE rolname = :name"), {"name": name}
            )
            await conn.exec_driver_sql(f"DROP ROLE {name}")
    finally:
        await engine.dispose()
    iterations, salt = made.split("$")[1].split(":")
    assert scram_sha_256(password, salt=base64.b64decode(salt), iterations=int(iterations)) == made


@pytest.mark.mysql
@pytest.mark.parametrize("password", PASSWORDS)
async def test_a_native_password_hash_is_the_one_mariadb_makes(password: str) -> None:
    (rows,) = await run(server_url(), f"SELECT PASSWORD('{password}')")
    assert native_password(password) == rows[0][0]
