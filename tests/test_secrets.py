"""Full tier: a rendered service given distinctive secrets, from files, never writes one.

Each server backend's variant with the cache and the example domain gets a database
password, a cursor secret and a Redis password that appear nowhere else, with the
characters a URL must quote, given as a Kubernetes Secret volume (SECRETS_DIR) and a
file (`CURSOR_SECRET_FILE`). Then every failure this test can force is forced: bad
settings, an unreachable server, a wrong password, a failed migration (Alembic's and
the start-up one), a database outage, a Redis that refuses the password, requests a
client gets wrong; in JSON and text logs. Everything the service and Alembic write, and
every response body (`/health/*`, `/metrics`, the errors), is searched for each secret,
as written and as URL-quoted, and for a fragment of it.
"""

import json
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import psycopg
import pytest

from .conftest import Rendered
from .harness.boot import start_up, uvicorn
from .harness.databases import POSTGRES_DSN, _user, cut_off, mariadb, postgres, reconnect
from .harness.run import run

pytestmark = pytest.mark.full
# A variant per server backend, each with the cache (a Redis password) and the example
# domain (error responses, cursors signed with the secret). SQLite has no password.
VARIANTS = ["postgresql-int-soft-delete-cache", "mysql-uuid-soft-delete-cache-traces"]
# A table the first migration creates: made beforehand, it makes the migration fail.
FIRST_TABLE = "project"
REDIS = ("127.0.0.1", 6379)


class Secrets:
    """This run's secrets, each around a core no other text holds, so that a fragment
    of one (a parser quoting part of a URL) is found too."""

    def __init__(self) -> None:
        self.cores = {kind: f"{kind}{secrets.token_hex(6)}" for kind in ("Pw", "Cs", "Rd")}
        # `/`, `@`, `:` and `+` need quoting in a URL; `%` is left out (MariaDB's GRANT).
        self.password = f"{self.cores['Pw']}/p@ss:w+rd"
        self.cursor = f"{self.cores['Cs']}-" + secrets.token_urlsafe(32)
        self.redis_password = f"{self.cores['Rd']}/r@dis+pw"

    def forms(self) -> set[str]:
        values = (self.password, self.cursor, self.redis_password)
        every = {*self.cores.values()}
        for value in values:
            every |= {value, quote(value, safe=""), quote(value), quote_plus(value)}
            every.add(json.dumps(value)[1:-1])
        return every

    def found_in(self, text: str) -> set[str]:
        return {form for form in self.forms() if form in text}


def redis_command(*args: str) -> bytes:
    """One command to the local Redis (RESP), its first reply line."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        request += f"${len(arg.encode())}\r\n".encode() + arg.encode() + b"\r\n"
    with socket.create_connection(REDIS, timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0]


@contextmanager
def redis_user(password: str) -> Iterator[str]:
    """An ACL user of this run's with `password` on the shared Redis, deleted afterwards."""
    name = f"cfs-secrets-{uuid.uuid4().hex[:10]}"
    try:
        reply = redis_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    except OSError as error:
        pytest.fail(f"The full tier needs Redis on 127.0.0.1:6379: {error}", pytrace=False)
    assert reply == b"+OK", reply
    try:
        yield name
    finally:
        redis_command("ACL", "DELUSER", name)


@contextmanager
def database_with_a_password(database: str, password: str) -> Iterator[tuple[str, str]]:
    """A new database and a user of its own with `password`: (name, user); dropped after."""
    name = f"cfs_secrets_{uuid.uuid4().hex[:10]}"
    if database == "postgresql":
        literal = password.replace("'", "''")
        postgres(f"CREATE ROLE {name} LOGIN PASSWORD '{literal}'")
        postgres(f'CREATE DATABASE "{name}" OWNER {name}')
        try:
            yield name, name
        finally:
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            postgres(f"DROP ROLE IF EXISTS {name}")
        return
    user = _user(name)  # as the harness's cut_off() finds it
    mariadb(f"CREATE DATABASE `{name}`")
    mariadb(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    mariadb(f"GRANT ALL ON `{name}`.* TO '{user}'@'%'")
    try:
        yield name, user
    finally:
        mariadb(f"DROP DATABASE IF EXISTS `{name}`")
        mariadb(f"DROP USER IF EXISTS '{user}'@'%'")


def url(database: str, user: str, password: str, name: str, port: int | None = None) -> str:
    port = port or {"postgresql": 5432, "mysql": 3306}[database]
    return f"{database}://{user}:{quote(password, safe='')}@127.0.0.1:{port}/{name}"


def test_the_search_finds_every_form_of_a_secret() -> None:
    """The check below can fail: each form a secret may be written in is found."""
    found = Secrets()
    for text in (
        f"x{found.password}y",
        quote(found.password, safe=""),
        json.dumps({"url": found.redis_password}),
        f"port {found.cores['Pw']}",
    ):
        assert found.found_in(text), text


@pytest.mark.parametrize("name", VARIANTS)
def test_no_secret_is_ever_written(
    name: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    rendered = render(name)
    bin_dir = venv_for(rendered)
    database = rendered.answers["database"]
    given = Secrets()
    written: dict[str, str] = {}  # what each step wrote or answered, by step

    def uvicorn_fails(step: str, env: dict[str, str], expected: str) -> None:
        """A start-up that must fail; its output is kept for the search."""
        outcome = start_up(bin_dir, rendered.path, rendered.package, env, timeout=120)
        written[step] = outcome.output
        assert not outcome.ok and expected in outcome.output, (step, outcome.output[-3000:])

    def alembic(step: str, env: dict[str, str], *, ok: bool, expected: str = "") -> None:
        outcome = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env, timeout=120)
        written[step] = outcome.output
        assert outcome.ok == ok and expected in outcome.output, (step, outcome.output[-3000:])

    with (
        database_with_a_password(database, given.password) as (db_name, user),
        redis_user(given.redis_password) as redis_name,
    ):
        # The secrets as a Kubernetes Secret volume and a file named by a variable.
        volume = tmp_path / "secrets"
        volume.mkdir()
        (volume / "DATABASE_URL").write_text(url(database, user, given.password, db_name) + "\n")
        redis_url = f"redis://{redis_name}:{quote(given.redis_password, safe='')}@127.0.0.1:6379/0"
        (volume / "REDIS_URL").write_text(redis_url)
        cursor_file = tmp_path / "cursor"
        cursor_file.write_text(given.cursor)
        env = {
            "SECRETS_DIR": str(volume),
            "CURSOR_SECRET_FILE": str(cursor_file),
            "DB_CONNECT_ATTEMPTS": "1",
            "HEALTH_TIMEOUT": "2",
            "DB_POOL_TIMEOUT": "2",
            "CACHE_KEY_PREFIX": f"secrets-{uuid.uuid4().hex[:12]}",
        }
        # Settings that stop start-up, each holding a secret where a parser would quote
        # it; the secrets given in the environment this time.
        direct = {
            "DATABASE_URL": url(database, user, given.password, db_name),
            "REDIS_URL": redis_url,
            "CURSOR_SECRET": given.cursor,
        }
        bad_port = f"{database}://{user}@127.0.0.1:{given.cores['Pw']}/{db_name}"
        query = f"{database}://{user}@127.0.0.1/{db_name}?password={quote(given.password)}"
        for step, bad, expected in [
            ("password in the port", {"DATABASE_URL": bad_port}, "not a database URL"),
            ("password in the query", {"DATABASE_URL": query}, "in the URL's query"),
            (
                "short cursor secret",
                {"ENVIRONMENT": "production", "CURSOR_SECRET": given.cores["Cs"]},
                "CURSOR_SECRET must be set",
            ),
            ("cursor secret twice", {"CURSOR_SECRET_FILE": str(cursor_file)}, "given twice"),
            ("not a Redis URL", {"REDIS_URL": f"http://:{given.redis_password}@x"}, "Redis URL"),
        ]:
            uvicorn_fails(step, direct | bad, expected)
        # An unreachable server and a password the server refuses (PostgreSQL trusts
        # local connections here, so there: a role that does not exist).
        wrong_port = url(database, user, given.password, db_name, port=1)
        wrong_user = user if database == "mysql" else f"{user}_nobody"
        wrong_password = url(database, wrong_user, given.password + "x", db_name)
        for step, target, expected in [
            ("unreachable", wrong_port, "cannot reach the database"),
            ("wrong password", wrong_password, "cannot start"),
        ]:
            files = tmp_path / step.replace(" ", "-")
            files.mkdir()
            (files / "DATABASE_URL").write_text(target)
            alembic(f"alembic, {step}", env | {"SECRETS_DIR": str(files)}, ok=False)
            uvicorn_fails(f"start-up, {step}", env | {"SECRETS_DIR": str(files)}, expected)
        # A migration that fails, from Alembic and at start-up, then one that succeeds.
        in_database(database, db_name, "CREATE TABLE {table} (id int)")
        alembic("failed migration", env, ok=False, expected=FIRST_TABLE)
        uvicorn_fails(
            "failed start-up migration",
            env | {"MIGRATE_ON_STARTUP": "true", "LOG_FORMAT": "json"},
            "start-up migration failed",
        )
        not_json = [line for line in written["failed start-up migration"].splitlines()]
        assert [line for line in not_json if not is_json(line)] == [], not_json[-10:]
        in_database(database, db_name, "DROP TABLE {table}")
        alembic("migration", env, ok=True, expected="Running upgrade")

        # Served, in JSON at DEBUG with every statement logged, migrating at start-up.
        served = env | {
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "DB_ECHO": "true",
            "MIGRATE_ON_STARTUP": "true",
        }
        log = tmp_path / "served.log"
        with uvicorn(bin_dir, rendered.path, rendered.package, served, log=log) as base:
            target = url(database, user, given.password, db_name)
            written["served: responses"] = exercise(base, database, target)
        written["served: log"] = log.read_text()
        not_json = [line for line in written["served: log"].splitlines() if not is_json(line)]
        assert not_json == [], not_json[:5]
        # Served in text, with a Redis that refuses the password.
        refused = redis_url.replace(quote(given.redis_password, safe=""), "wrong")
        (volume / "REDIS_URL").write_text(refused)
        log = tmp_path / "refused.log"
        with (
            uvicorn(bin_dir, rendered.path, rendered.package, env, log=log) as base,
            httpx.Client(base_url=base, timeout=10) as http,
        ):
            ready = http.get("/health/ready")
            assert ready.json()["checks"]["cache"] == "degraded", ready.text
            listing = http.get("/api/v1/projects")
            assert listing.status_code == 200, listing.text
            written["refused cache: responses"] = ready.text + listing.text
        written["refused cache: log"] = log.read_text()
        assert "cache unavailable" in written["refused cache: log"]

    leaks = {step: given.found_in(text) for step, text in written.items()}
    assert {step: found for step, found in leaks.items() if found} == {}


def in_database(database: str, name: str, statement: str) -> None:
    """`statement` on FIRST_TABLE (`{table}`) of the test's database, as its owner."""
    if database == "mysql":
        mariadb(statement.format(table=f"`{name}`.{FIRST_TABLE}"))
        return
    dsn = POSTGRES_DSN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"SET ROLE {name}".encode())
        conn.execute(statement.format(table=FIRST_TABLE).encode())


def is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def exercise(base: str, database: str, target: str) -> str:
    """Requests that succeed and fail, and an outage; every response, headers and body."""
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=base, timeout=10) as http:

        def call(method: str, path: str, status: int, **kwargs: object) -> httpx.Response:
            response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
            answers.append(response)
            assert response.status_code == status, (method, path, response.text)
            return response

        call("GET", "/health/live", 200)
        call("GET", "/health/ready", 200)
        call("GET", "/metrics", 200)
        call("GET", "/openapi.json", 200)
        ids = [
            call(
                "POST", "/api/v1/projects", 201, json={"name": "A", "slug": f"secrets-{n}"}
            ).json()["id"]
            for n in range(3)
        ]
        first = call("GET", "/api/v1/projects/cursor?size=2", 200).json()
        cursor = first["next_cursor"]
        call("GET", f"/api/v1/projects/cursor?size=2&cursor={cursor}", 200)
        call("GET", f"/api/v1/projects/cursor?size=2&cursor={cursor[:-2]}xx", 422)
        call("GET", f"/api/v1/projects/{ids[0]}", 200)  # twice: a cache fill, then a hit
        call("GET", f"/api/v1/projects/{ids[0]}", 200)
        call("POST", "/api/v1/projects", 422, json={"name": "", "slug": "Not A Slug"})
        call("POST", "/api/v1/projects", 409, json={"name": "Again", "slug": "secrets-0"})
        call("POST", "/api/v1/projects", 413, content=b"x" * 2_000_000)
        call("GET", "/no/such/path", 404)
        call("PUT", "/health/live", 405)
        cut_off(database, target)
        try:
            time.sleep(1.1)  # past the readiness answer given before the outage
            call("GET", "/health/ready", 503)
            call("GET", f"/api/v1/projects/{ids[1]}", 503)
        finally:
            reconnect(database, target)
        call("GET", "/metrics", 200)
    return "\n".join(
        f"{r.request.method} {r.request.url} {r.status_code}\n{r.headers}\n{r.text}"
        for r in answers
    )
