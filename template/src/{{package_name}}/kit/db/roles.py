"""What the service's own database role may do, checked at start-up in production.

The service serves as a role that reads and writes rows and nothing else (README,
"Database roles"): a SQL injection in code added later can then read and change rows,
but not drop a table. A superuser, or the owner of the tables, could do anything, so
production refuses to start as either, in one line that names the setting to change.
SQLite has no roles.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import Settings
from ..settings import SettingsError

# PostgreSQL: is the role a superuser; does it own the database, or a table, view or
# sequence in the schema the service uses.
_POSTGRESQL = text(
    "SELECT r.rolsuper, (SELECT d.datdba = r.oid FROM pg_database d "
    "WHERE d.datname = current_database()) OR EXISTS (SELECT FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relowner = r.oid "
    "AND n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S')) "
    "FROM pg_roles r WHERE r.rolname = current_user"
)
# MariaDB and MySQL have no owners: a user that may change the schema is one. Global
# privileges, then those on this database, of the user the server took the login for.
_MARIADB = text(
    "SELECT p.scope, p.privilege_type FROM ("
    "SELECT 'global' AS scope, grantee, privilege_type FROM information_schema.user_privileges "
    "UNION ALL SELECT 'database', grantee, privilege_type "
    "FROM information_schema.schema_privileges WHERE table_schema = DATABASE()) p "
    "WHERE p.grantee = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)
_SUPER = frozenset({"SUPER"})
_SCHEMA_CHANGES = frozenset({"CREATE", "ALTER", "DROP", "INDEX", "REFERENCES"})
_HOW = (
    "point DATABASE_URL at the service's own role, which reads and writes rows only, and "
    'DATABASE_OWNER_URL at the owner, which migrates (README, "Database roles")'
)


async def privileged(connection: AsyncConnection) -> str | None:
    """What the connection's role may do beyond rows ("a superuser", "the owner of its
    tables"); None when it reads and writes rows only."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        row = (await connection.execute(_POSTGRESQL)).one()
        if row[0]:
            return "a superuser"
        return "the owner of the database or its tables" if row[1] else None
    if dialect == "mysql":
        rows = (await connection.execute(_MARIADB)).all()
        granted = {str(kind) for scope, kind in rows if scope == "global"}
        if granted & _SUPER:
            return "a superuser (SUPER)"
        if {str(kind) for _, kind in rows} & _SCHEMA_CHANGES:
            return "the owner of its tables (it may create, alter or drop them)"
    return None


async def refuse_privileged_role(connection: AsyncConnection, settings: Settings) -> None:
    """In production: stop start-up when DATABASE_URL's role may do more than rows."""
    if settings.environment != "production":
        return
    found = await privileged(connection)
    if found is not None:
        user = settings.database_url.username
        raise SettingsError(f"DATABASE_URL connects as {user!r}, {found}: {_HOW}")
