"""Two database roles: the owner, which migrates, and the service's, which reads and writes rows.

`python -m <package>.kit.migrations.roles` creates both roles for the database
DATABASE_URL names, or brings existing ones up to date, connected as an administrator
(DATABASE_ADMIN_URL, read from the environment only: a superuser, or a managed
server's administrator). The owner is DATABASE_OWNER_URL's user, the service's role
DATABASE_URL's, each with its URL's password (none in the URL: none set), sent as the
server's own hash of it (`verifiers.py`), never in plain text. Run it again
at any time: on a database that already has tables it grants the service role their
rows, and hands the owner whatever the service role owned.

Every migration run then repeats, as the owner (`grant_service`), what new tables need,
so a migration written by autogenerate needs no step of its own. SQLite has no roles: a
file is opened with the privileges of whoever may open it.
"""

import asyncio
import os
import sys

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ..db.dialect import one_off_connect_args
from ..settings import Settings
from ..settings import SettingsError
from ..settings import load_settings
from ..settings.urls import parse_database_url
from .verifiers import native_password
from .verifiers import scram_sha_256

# What the service role may do with each table and sequence: rows, never the schema.
ROWS = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCES = "USAGE, SELECT"
# The timeouts behind PgBouncer, which refuses them as start-up parameters: the
# database's own settings, which every server connection PgBouncer opens starts with.
_TIMEOUTS = {
    "statement_timeout": "db_statement_timeout_ms",
    "idle_in_transaction_session_timeout": "db_idle_in_transaction_timeout_ms",
}


# PostgreSQL: statements that give the owner every table, view, sequence and type of the
# schema it does not own yet (a sequence of a table's column goes with its table).
_NOT_THE_OWNERS = text(
    "SELECT format('ALTER %s %I.%I OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' "
    "WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' "
    "ELSE 'TABLE' END, n.nspname, c.relname, CAST(:owner AS text)) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
    "AND pg_get_userbyid(c.relowner) <> :owner AND NOT EXISTS (SELECT FROM pg_depend d "
    "WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')) "
    "UNION ALL SELECT format('ALTER TYPE %I.%I OWNER TO %I', n.nspname, t.typname, "
    "CAST(:owner AS text)) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'd') "
    "AND pg_get_userbyid(t.typowner) <> :owner"
)


def quote(identifier: str) -> str:
    """A PostgreSQL identifier or MariaDB name, quoted for a statement of its own."""
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings: only quotes double)."""
    return "'" + value.replace("'", "''") + "'"


def two_roles(settings: Settings) -> tuple[str, str] | None:
    """The owner's and the service role's names; None with one role (no
    DATABASE_OWNER_URL, or the same user in both URLs) or on SQLite."""
    owner, service = settings.migration_url.username, settings.database_url.username
    if settings.database_owner_url is None or not owner or not service or owner == service:
        return None
    return owner, service


def _passwords(settings: Settings, owner: str, service: str) -> list[tuple[str, str | None]]:
    return [(owner, settings.migration_url.password), (service, settings.database_url.password)]


async def create_roles(connection: AsyncConnection, settings: Settings) -> list[str]:
    """Create or update both roles and their privileges on `connection`, an administrator's
    connection to the service's database; returns what it did, one line each."""
    roles = two_roles(settings)
    if roles is None:
        raise SettingsError(
            "roles: DATABASE_OWNER_URL and DATABASE_URL must name two different users "
            "(the owner, which migrates, and the service's role, which reads and writes)"
        )
    if connection.dialect.name == "postgresql":
        return await _postgresql_roles(connection, settings, *roles)
    return await _mariadb_roles(connection, settings, *roles)


async def _postgresql_roles(
    conn: AsyncConnection, settings: Settings, owner: str, service: str
) -> list[str]:
    database = quote(str(settings.database_url.database))
    schema = quote(str(await conn.scalar(text("SELECT current_schema()"))))
    done: list[str] = []
    for name, password in _passwords(settings, owner, service):
        superuser = await conn.scalar(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = :name"), {"name": name}
        )
        if superuser:
            raise SettingsError(f"roles: {name!r} is a superuser; name a role of its own")
        verb = "ALTER" if superuser is not None else "CREATE"
        statement = f"{verb} ROLE {quote(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
        if password:
            statement += f" PASSWORD {_literal(scram_sha_256(password))}"
        await conn.exec_driver_sql(statement)
        # Settings a role kept from an earlier release (which set the timeouts at
        # start-up): the database's own, set by every migration, apply instead.
        await conn.exec_driver_sql(f"ALTER ROLE {quote(name)} IN DATABASE {database} RESET ALL")
        done.append(f"role {name}: {verb.lower()}d")
    o, s = quote(owner), quote(service)
    for statement in (
        # The owner owns the database, its schema's objects, and may create in the schema.
        f"ALTER DATABASE {database} OWNER TO {o}",
        f"REASSIGN OWNED BY {s} TO {o}",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {o}, {s}",
        f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {o}",
        # Nobody else creates there (PostgreSQL before 15 lets every role create in public).
        f"REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC, {s}",
        f"GRANT USAGE ON SCHEMA {schema} TO {s}",
        # Rows only: TRUNCATE, REFERENCES and TRIGGER are the owner's.
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {s}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {s}",
    ):
        await conn.exec_driver_sql(statement)
    # What another role made in the schema (a table an administrator created, say): the
    # owner's from now on, so that migrations may alter it.
    for (statement,) in await conn.execute(_NOT_THE_OWNERS, {"owner": owner}):
        await conn.exec_driver_sql(statement)
    done.append(f"owner {owner}: owns database {settings.database_url.database} and its tables")
    await _grant(conn, schema, service, owner=owner)
    done.append(f"service {service}: {ROWS} on every table, {SEQUENCES} on every sequence")
    return done


async def _grant(
    conn: AsyncConnection, schema: str, service: str, *, owner: str | None = None
) -> None:
    """The service role's rows in every table there is, and in every table the owner
    creates from now on (default privileges). `owner`: for whom, when an administrator
    runs it; None when the owner runs it itself."""
    s = quote(service)
    whose = f"FOR ROLE {quote(owner)} " if owner else ""
    for statement in (
        f"ALTER DEFAULT PRIVILEGES {whose}IN SCHEMA {schema} GRANT {ROWS} ON TABLES TO {s}",
        f"ALTER DEFAULT PRIVILEGES {whose}IN SCHEMA {schema} GRANT {SEQUENCES} ON SEQUENCES TO {s}",
        f"GRANT {ROWS} ON ALL TABLES IN SCHEMA {schema} TO {s}",
        f"GRANT {SEQUENCES} ON ALL SEQUENCES IN SCHEMA {schema} TO {s}",
    ):
        await conn.exec_driver_sql(statement)


async def _mariadb_roles(
    conn: AsyncConnection, settings: Settings, owner: str, service: str
) -> list[str]:
    """Privileges on the database (`name`.*) cover the tables created there later."""
    database = "`" + str(settings.database_url.database).replace("`", "``") + "`"
    done: list[str] = []
    for name, password in _passwords(settings, owner, service):
        exists = text("SELECT 1 FROM mysql.user WHERE user = :name AND host = '%'")
        if (await conn.execute(exists, {"name": name})).first() is None:
            await conn.execute(text("CREATE USER :name@'%'"), {"name": name})
        if password:
            change = text("ALTER USER :name@'%' IDENTIFIED BY PASSWORD :hash")
            await conn.execute(change, {"name": name, "hash": native_password(password)})
        done.append(f"user {name}@%: created or updated")
    as_owner, as_service = {"name": owner}, {"name": service}
    grants = await conn.execute(text("SHOW GRANTS FOR :name@'%'"), as_service)
    if any(f" ON {database}.* " in row[0] for row in grants):
        # An earlier release's one user, now the service's: rows only from here on.
        await conn.execute(
            text(f"REVOKE ALL PRIVILEGES ON {database}.* FROM :name@'%'"), as_service
        )
    await conn.execute(text(f"GRANT ALL PRIVILEGES ON {database}.* TO :name@'%'"), as_owner)
    await conn.execute(text(f"GRANT {ROWS} ON {database}.* TO :name@'%'"), as_service)
    done.append(f"owner {owner}: every privilege on {database} but GRANT OPTION")
    done.append(f"service {service}: {ROWS} on {database} (its tables, present and future)")
    return done


async def grant_service(connection: AsyncConnection, settings: Settings) -> None:
    """After a migration, as the owner: the service role's rows in every table, and the
    timeouts PgBouncer needs as the database's settings. MariaDB: the grants on the
    database (`create_roles`) cover new tables already; nothing to do."""
    if connection.dialect.name != "postgresql":
        return
    roles = two_roles(settings)
    if roles is not None:
        schema = quote(str(await connection.scalar(text("SELECT current_schema()"))))
        await _grant(connection, schema, roles[1])
    for statement in timeout_settings(settings):
        await connection.exec_driver_sql(statement)


def timeout_settings(settings: Settings) -> list[str]:
    """Behind PgBouncer, the statements that make the timeouts the database's settings
    (PostgreSQL); none otherwise. `alembic upgrade --sql` writes them into its script
    too, which the owner applies: the service's role needs no grant there, the default
    privileges the roles command set give it every table the owner creates."""
    if not settings.db_behind_pgbouncer:
        return []
    database = quote(str(settings.database_url.database))
    statements = []
    for name, setting in _TIMEOUTS.items():
        value = int(getattr(settings, setting))
        change = f"SET {name} = {value}" if value else f"RESET {name}"
        statements.append(f"ALTER DATABASE {database} {change}")
    return statements


async def main() -> int:
    admin = os.environ.get("DATABASE_ADMIN_URL")
    if not admin:
        print("roles: set DATABASE_ADMIN_URL to an administrator's URL", file=sys.stderr)
        return 2
    settings = load_settings(Settings)
    url: URL = parse_database_url(admin, server_only=True)
    url = url.set(database=settings.database_url.database)
    engine = create_async_engine(url, poolclass=NullPool, connect_args=one_off_connect_args(url))
    try:
        async with engine.begin() as conn:
            for line in await create_roles(conn, settings):
                print(f"roles: {line}")
    finally:
        await engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
