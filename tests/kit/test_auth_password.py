"""The service's own users (`kit/auth/password/`), on the real database: Argon2id hashes
made again when their cost changes, registration and login, one answer (and the same
work) for a wrong password and an unknown email, refresh token rotation with reuse
detection, logout, revocation, and every bad token or input a 4xx problem.

Requests commit for real, on apps of their own (`password.py`); the rows are deleted
after each test.
"""

import base64
import importlib
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from pwdlib import PasswordHash
from pydantic import SecretStr, ValidationError
from service.kit.auth.password import Accounts, PasswordAuthenticator, password_router
from service.kit.auth.password.hashing import Passwords
from service.kit.auth.password.models import RefreshToken
from service.kit.auth.password.tokens import DEVELOPMENT_KEY
from service.kit.auth.principal import Unauthenticated
from service.kit.db.session import ReadSession, WriteSession
from service.kit.extras import MissingPackages
from service.kit.settings import (
    SettingsError,
    format_validation_error,
    load_settings,
    secret_fields,
    secret_values,
)
from service.settings import Settings
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .password import PASSWORD, TABLES, bearer, cheap, login, password_app, register

STRONG_KEY = "k" * 40


@pytest.fixture
def fast(settings: Settings, clean_users: None) -> Settings:
    return cheap(settings)


def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# -- hashing ---------------------------------------------------------------------------


async def test_passwords_are_argon2id_and_made_again_when_the_cost_changes(
    settings: Settings,
) -> None:
    before = Passwords(cheap(settings))
    stored = await before.hash(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await before.verify(PASSWORD, stored) == (True, None)
    assert await before.verify("wrong password!", stored) == (False, None)
    after = Passwords(cheap(settings, password_hash_time_cost=2))
    valid, rehashed = await after.verify(PASSWORD, stored)
    assert valid and rehashed is not None and rehashed.startswith("$argon2id$v=19$m=1024,t=2,p=1$")
    assert await after.verify(PASSWORD, rehashed) == (True, None)
    # A stored value that is no hash is a refused login, not an error.
    assert await before.verify(PASSWORD, "not a hash") == (False, None)


async def test_a_login_stores_the_hash_again_with_the_new_cost(
    fast: Settings, engine: AsyncEngine
) -> None:
    async with password_app(fast) as client:
        assert (await register(client, "cost@example.com")).status_code == 201
    changed = cheap(fast, password_hash_time_cost=2)
    async with password_app(changed) as client:
        assert (await login(client, "cost@example.com")).status_code == 200
    async with engine.connect() as conn:
        stored = (await conn.execute(TABLES[3].__table__.select())).one().password_hash
    assert stored.startswith("$argon2id$v=19$m=1024,t=2,p=1$")


# -- registration and login ------------------------------------------------------------


async def test_a_user_registers_logs_in_and_is_known_by_the_token(fast: Settings) -> None:
    async with password_app(fast) as client:
        created = await register(client, "Ada@Example.com")
        assert created.status_code == 201, created.text
        assert created.json()["email"] == "ada@example.com"
        assert created.json()["permissions"] == ["things:read"]
        answer = await login(client, "ADA@example.COM")
        assert answer.status_code == 200, answer.text
        tokens = answer.json()
        assert tokens["token_type"] == "bearer"
        assert tokens["expires_in"] == fast.password_access_token_seconds
        me = await client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        assert me.json() == created.json()


async def test_an_email_is_taken_whatever_its_case(fast: Settings) -> None:
    async with password_app(fast) as client:
        assert (await register(client, "grace@example.com")).status_code == 201
        taken = problem_of(await register(client, "GRACE@example.com", "another long one"), 409)
        assert "exists" in taken["detail"]


@pytest.mark.parametrize(
    ("email", "password", "status"),
    [
        pytest.param("short@example.com", "eleven char", 422, id="too-short"),
        pytest.param("long@example.com", "x" * 129, 422, id="too-long"),
        pytest.param("samesame@example.com", "samesame@example.com", 422, id="the-email"),
        pytest.param("no-at-sign", PASSWORD, 422, id="not-an-email"),
        pytest.param("nul@example.com", "with a \x00 inside!", 422, id="nul"),
    ],
)
async def test_the_password_rules_answer_422(
    fast: Settings, email: str, password: str, status: int
) -> None:
    async with password_app(fast) as client:
        problem_of(await register(client, email, password), status)


async def test_registration_closed_has_no_route(fast: Settings) -> None:
    async with password_app(cheap(fast, password_registration_open=False)) as client:
        problem_of(await register(client, "closed@example.com"), 404)


async def test_a_wrong_password_and_an_unknown_email_get_one_answer(fast: Settings) -> None:
    async with password_app(fast) as client:
        await register(client, "known@example.com")
        wrong = await login(client, "known@example.com", "not the password")
        unknown = await login(client, "nobody@example.com", "not the password")
    bodies = [problem_of(r, 401) for r in (wrong, unknown)]
    for body in bodies:
        del body["request_id"]
    assert bodies[0] == bodies[1]
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_email_costs_a_real_password_check(
    fast: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argon2 itself verifies a hash for an unknown email (the dummy): the same work as a
    known user's."""
    checked: list[str] = []
    real = PasswordHash.verify_and_update

    def recording(
        self: PasswordHash, password: str | bytes, hash: str | bytes
    ) -> tuple[bool, str | None]:
        checked.append(str(hash))
        return real(self, password, hash)

    monkeypatch.setattr(PasswordHash, "verify_and_update", recording)
    async with password_app(fast) as client:
        problem_of(await login(client, "ghost@example.com", "whatever it is"), 401)
    (dummy,) = checked
    assert dummy.startswith("$argon2id$v=19$m=1024,t=1,p=1$")


async def test_a_known_and_an_unknown_email_take_the_same_order_of_time(
    settings: Settings, clean_users: None
) -> None:
    """Loose on purpose (medians, a factor of 3): a missing hash check would be a factor
    of a hundred at this cost."""
    costly = cheap(settings, password_hash_memory_kib=32_768, password_hash_time_cost=3)
    costly = costly.model_copy(update={"password_attempts_per_address": 1000})
    async with password_app(costly) as client:
        await register(client, "timed@example.com")

        async def timed(email: str) -> float:
            start = time.perf_counter()
            problem_of(await login(client, email, "not the password"), 401)
            return time.perf_counter() - start

        known, unknown = [], []
        for n in range(4):  # below the account's limit of 5
            known.append(await timed("timed@example.com"))
            unknown.append(await timed(f"unknown-{n}@example.com"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 1 / 3 < ratio < 3, (known, unknown)


# -- refresh tokens --------------------------------------------------------------------


async def test_a_refresh_token_is_good_for_one_use_and_a_reuse_ends_the_family(
    fast: Settings,
) -> None:
    async with password_app(fast) as client:
        await register(client, "turing@example.com")
        first = (await login(client, "turing@example.com")).json()
        second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert second.status_code == 200, second.text
        rotated = second.json()
        assert rotated["refresh_token"] != first["refresh_token"]
        assert (await client.get("/auth/me", headers=bearer(rotated["access_token"]))).is_success
        # The first token again: someone else holds it. The family ends, both logins too.
        reused = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
        assert problem_of(reused, 401)
        again = await client.post("/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
        problem_of(again, 401)
        for access in (first["access_token"], rotated["access_token"]):
            problem_of(await client.get("/auth/me", headers=bearer(access)), 401)
        # Another login of the same user is another family, untouched.
        other = (await login(client, "turing@example.com")).json()
        assert (await client.get("/auth/me", headers=bearer(other["access_token"]))).is_success


async def test_an_expired_refresh_token_is_refused(fast: Settings, engine: AsyncEngine) -> None:
    async with password_app(fast) as client:
        await register(client, "late@example.com")
        tokens = (await login(client, "late@example.com")).json()
        async with engine.begin() as conn:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await conn.execute(update(RefreshToken).values(expires_at=past))
        body = {"refresh_token": tokens["refresh_token"]}
        problem_of(await client.post("/auth/refresh", json=body), 401)


async def test_logout_ends_the_login_and_tells_nothing_of_unknown_tokens(fast: Settings) -> None:
    async with password_app(fast) as client:
        await register(client, "hopper@example.com")
        tokens = (await login(client, "hopper@example.com")).json()
        out = await client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
        assert out.status_code == 204
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        problem_of(refreshed, 401)
        problem_of(await client.get("/auth/me", headers=bearer(tokens["access_token"])), 401)
        unknown = await client.post("/auth/logout", json={"refresh_token": "unknown-token"})
        assert unknown.status_code == 204


async def test_a_disabled_user_and_revoked_logins_are_refused_at_once(
    fast: Settings, engine: AsyncEngine
) -> None:
    accounts = Accounts(fast)
    async with password_app(fast) as client:
        user = (await register(client, "lovelace@example.com")).json()
        one = (await login(client, "lovelace@example.com")).json()
        two = (await login(client, "lovelace@example.com")).json()
        sessions = async_sessionmaker(engine, class_=ReadSession, expire_on_commit=False)
        writes = async_sessionmaker(engine, class_=WriteSession, expire_on_commit=False)
        async with writes() as session:
            await accounts.revoke_sessions(session, uuid.UUID(user["id"]))
        for tokens in (one, two):
            problem_of(await client.get("/auth/me", headers=bearer(tokens["access_token"])), 401)
            refresh = {"refresh_token": tokens["refresh_token"]}
            problem_of(await client.post("/auth/refresh", json=refresh), 401)
        three = (await login(client, "lovelace@example.com")).json()
        authenticator = PasswordAuthenticator(fast, sessions, accounts.tokens)
        assert (await authenticator.authenticate(three["access_token"])).subject == user["id"]
        async with writes() as session:
            await accounts.set_active(session, uuid.UUID(user["id"]), False)
        with pytest.raises(Unauthenticated, match="disabled"):
            await authenticator.authenticate(three["access_token"])
        problem_of(await client.get("/auth/me", headers=bearer(three["access_token"])), 401)
        problem_of(await login(client, "lovelace@example.com"), 401)
        refresh = {"refresh_token": three["refresh_token"]}
        problem_of(await client.post("/auth/refresh", json=refresh), 401)


# -- access tokens ---------------------------------------------------------------------


def _forged(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    return jwt.encode({"alg": alg}, claims, OctKey.import_key(key), algorithms=[alg])


def _unsigned(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_a_bad_access_token_is_a_401_with_a_challenge(fast: Settings) -> None:
    async with password_app(fast) as client:
        await register(client, "bad@example.com")
        good = (await login(client, "bad@example.com")).json()["access_token"]
        claims = jwt.decode(good, OctKey.import_key(DEVELOPMENT_KEY.encode())).claims
        header, _payload, signature = good.split(".")
        tampered_claims = {**claims, "sub": "00000000-0000-7000-8000-000000000000"}
        tampered_payload = _unsigned(tampered_claims).split(".")[1]
        key = DEVELOPMENT_KEY.encode()
        now = int(time.time())
        bad = {
            "expired": _forged({**claims, "iat": now - 100, "exp": now - 60}, key),
            "tampered": f"{header}.{tampered_payload}.{signature}",
            "other-key": _forged(claims, b"another key of thirty-two bytes!"),
            "alg-none": _unsigned(claims),
            "other-audience": _forged({**claims, "aud": "another-service"}, key),
            "no-session": _forged({k: v for k, v in claims.items() if k != "sid"}, key),
            "not-a-uuid": _forged({**claims, "sub": "admin"}, key),
            "garbage": "not.a.token",
            "empty-parts": "..",
            "huge": "a" * 10_000,
        }
        for name, token in bad.items():
            refused = await client.get("/auth/me", headers=bearer(token))
            problem_of(refused, 401)
            assert refused.headers["www-authenticate"].startswith("Bearer"), name
        problem_of(await client.get("/auth/me"), 401)
        assert (await client.get("/auth/me", headers=bearer(good))).status_code == 200


async def test_the_authenticator_meets_the_contract(fast: Settings, engine: AsyncEngine) -> None:
    async with password_app(fast) as client:
        user = (await register(client, "contract@example.com")).json()
        access = (await login(client, "contract@example.com")).json()["access_token"]
    sessions = async_sessionmaker(engine, class_=ReadSession, expire_on_commit=False)
    authenticator = PasswordAuthenticator(fast, sessions)
    principal = await authenticator.authenticate(access)
    assert principal.subject == user["id"]
    assert principal.may("things:read") and not principal.may("things:write")
    assert principal.claims["email"] == "contract@example.com"
    for token in ("", "x", "a.b.c", access + "x"):
        with pytest.raises(Unauthenticated):
            await authenticator.authenticate(token)


# -- bad input -------------------------------------------------------------------------


async def test_bad_input_is_a_problem_never_a_5xx(fast: Settings) -> None:
    async with password_app(fast) as client:
        answers = [
            await client.post("/auth/token", data={"username": "a@b.c"}),
            await client.post("/auth/token", json={"username": "a@b.c", "password": "x"}),
            await client.post(
                "/auth/token",
                content=b"\xff\xfe",
                headers={"content-type": "application/x-www-form-urlencoded"},
            ),
            await client.post(
                "/auth/token", data={"username": "a@b.c", "password": "p", "grant_type": "other"}
            ),
            await client.post("/auth/refresh", json={"refresh_token": "has spaces"}),
            await client.post("/auth/refresh", json={"refresh_token": "x" * 201}),
            await client.post("/auth/refresh", content=b"{"),
            await client.post("/auth/logout", json={}),
            await client.post("/auth/register", json={"email": "a@b.c"}),
            await client.post(
                "/auth/register", json={"email": "x" * 300 + "@b.c", "password": PASSWORD}
            ),
            await client.post("/auth/token", data={"username": "\x00@b.c", "password": "x" * 5000}),
        ]
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.headers["content-type"] == "application/problem+json"


# -- the signing key -------------------------------------------------------------------

PRODUCTION_SECRET = SecretStr("c" * 40)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 31, id="31-bytes"),
        pytest.param("change-me-please-to-something-long", id="placeholder"),
        pytest.param(DEVELOPMENT_KEY, id="the-development-key"),
    ],
)
def test_production_refuses_a_weak_signing_key_in_one_line(key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(
            environment="production", cursor_secret=PRODUCTION_SECRET, password_signing_key=key
        )
    lines = format_validation_error(caught.value).splitlines()
    assert len(lines) == 2, lines
    assert "PASSWORD_SIGNING_KEY" in lines[1] and "at least 32 bytes" in lines[1]
    assert not key or key not in lines[1]
    assert Settings(environment="development", password_signing_key=SecretStr(key))


def test_production_without_a_signing_key_stops_when_the_routes_are_built() -> None:
    settings = Settings(environment="production", cursor_secret=PRODUCTION_SECRET)
    with pytest.raises(SettingsError, match="PASSWORD_SIGNING_KEY must be set in production"):
        password_router(cheap(settings))
    strong = cheap(settings, password_signing_key=SecretStr(STRONG_KEY))
    assert password_router(strong).routes


def test_the_signing_key_is_a_secret_read_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    key_file = tmp_path / "signing-key"
    key_file.write_text(STRONG_KEY + "\n")
    monkeypatch.setenv("PASSWORD_SIGNING_KEY_FILE", str(key_file))
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("CURSOR_SECRET", "c" * 40)
    loaded = load_settings(Settings)
    assert loaded.password_signing_key == SecretStr(STRONG_KEY)
    assert "password_signing_key" in secret_fields(Settings)
    assert STRONG_KEY in secret_values(loaded)  # kept out of the log


@pytest.mark.parametrize("missing", ["pwdlib", "joserfc", "python_multipart"])
def test_without_the_extra_the_service_stops_in_one_line(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # as if the extra were not installed
    for name in [n for n in sys.modules if n.startswith("service.kit.auth.password")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingPackages) as caught:
        importlib.import_module("service.kit.auth.password")
    message = str(caught.value)
    assert "\n" not in message and missing in message
    assert "uv sync --extra password" in message


async def test_the_openapi_document_declares_the_password_flow(fast: Settings) -> None:
    """So that the interactive docs' "Authorize" logs in through /auth/token."""
    async with password_app(fast) as client:
        document = (await client.get("/openapi.json")).json()
    (scheme,) = document["components"]["securitySchemes"].values()
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/auth/token"
    assert document["paths"]["/auth/me"]["get"]["security"]
    token = document["paths"]["/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert {"401", "422", "429"} <= set(token["responses"])
