"""The users' command, `python -m <package>.kit.auth.password.admin`, on the real
database: a user made with registration closed and its password from stdin, their
permissions replaced, disabled and enabled, their logins revoked; bad input refused."""

import asyncio
import os
import sys

from service.kit.auth.password.tokens import DEVELOPMENT_KEY
from service.settings import Settings

from .conftest import SERVICE_ROOT
from .password import CHEAP, PASSWORD, bearer, cheap, login, password_app


async def admin(settings: Settings, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """The command as an operator runs it: its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.kit.auth.password.admin",
        *args,
        env={
            **os.environ,
            "PYTHONPATH": str(SERVICE_ROOT / "src"),
            "DATABASE_URL": settings.database_url.render_as_string(hide_password=False),
            "DB_POOL_SIZE": "1",
            "DB_WRITE_POOL_SIZE": "1",
            **{name.upper(): str(value) for name, value in CHEAP.items()},
            "PASSWORD_SIGNING_KEY": DEVELOPMENT_KEY,  # the one the test apps sign with
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    # Behind PgBouncer the start-up warns that this test database's timeouts are not the
    # ones its migrations would set (the kit's tests create tables without migrating):
    # the environment's line, not the command's.
    said = [line for line in err.decode().splitlines(True) if not line.startswith(_TIMEOUTS)]
    return process.returncode, out.decode(), "".join(said)


_TIMEOUTS = "behind PgBouncer "


async def test_an_operator_makes_and_manages_a_user(settings: Settings, clean_users: None) -> None:
    closed = cheap(settings, password_registration_open=False)
    status, out, err = await admin(
        settings,
        "create",
        "Admin@Example.com",
        "--permissions",
        "a:read,a:write",
        stdin=PASSWORD + "\n",
    )
    assert (status, err) == (0, ""), err
    assert "admin@example.com" in out and PASSWORD not in out
    async with password_app(closed) as client:
        tokens = (await login(client, "admin@example.com")).json()
        me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.json()["permissions"] == ["a:read", "a:write"]
        assert (await admin(settings, "permissions", "admin@example.com", "b:read"))[0] == 0
        me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.json()["permissions"] == ["b:read"]
        assert (await admin(settings, "revoke", "admin@example.com"))[0] == 0
        assert (
            await client.get("/auth/me", headers=bearer(tokens["access_token"]))
        ).status_code == 401
        assert (await admin(settings, "disable", "admin@example.com"))[0] == 0
        assert (await login(client, "admin@example.com")).status_code == 401
        assert (await admin(settings, "enable", "admin@example.com"))[0] == 0
        assert (await login(client, "admin@example.com")).status_code == 200


async def test_the_users_command_refuses_bad_input_in_one_line(
    settings: Settings, clean_users: None
) -> None:
    status, _, err = await admin(settings, "disable", "nobody@example.com")
    assert status == 1 and err.count("\n") == 1 and "no user" in err
    status, _, err = await admin(settings, "create", "short@example.com", stdin="short\n")
    assert status == 1 and err.count("\n") == 1 and "characters" in err
    assert (await admin(settings, "create", "twice@example.com", stdin=PASSWORD))[0] == 0
    status, _, err = await admin(settings, "create", "TWICE@example.com", stdin=PASSWORD)
    assert status == 1 and "exists" in err
    status, _, err = await admin(settings, "promote", "x@example.com")
    assert status == 2 and "usage" in err
