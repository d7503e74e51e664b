"""AUTH=oidc against a real OpenID provider (tests/oidc/: oidc-provider on Node.js), and
the token attacks a resource server must refuse: each is a 401, never a 5xx.

The provider signs with keys this module makes, so that the attacks a holder of the
provider's public key can mount (HMAC with that key) and a forger of one claim (another
issuer, signed with the real key) can be made too.
"""

import asyncio
import base64
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from joserfc import jwt
from joserfc.jwk import RSAKey
from service.kit.auth.dependencies import CurrentPrincipal, require
from service.kit.auth.jwks import import_keys
from service.kit.auth.oidc import OidcAuthenticator
from service.kit.auth.principal import Principal, ProviderUnavailable, Unauthenticated
from service.kit.settings import SettingsError
from service.main import create_app
from service.settings import Settings

from ..oidc.provider import AUDIENCE, Provider, free_port, running


def signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256", "use": "sig"})


def jwks(*keys: RSAKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=True) for key in keys]}


KEY = signing_key("first")


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running(jwks(KEY)) as provider:
        yield provider


def oidc_settings(settings: Settings, provider: Provider, **changes: Any) -> Settings:
    values = {
        "auth": "oidc",
        "oidc_issuer": provider.issuer,
        "oidc_audience": AUDIENCE,
        "auth_leeway_seconds": 0,
        "oidc_jwks_min_refresh_seconds": 60.0,
    }
    return settings.model_copy(update=values | changes)


@pytest.fixture
async def authenticator(settings: Settings, provider: Provider) -> AsyncIterator[OidcAuthenticator]:
    authenticator = OidcAuthenticator(oidc_settings(settings, provider))
    yield authenticator
    await authenticator.close()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, claims, signature = token.split(".")
    return json.loads(_unb64(header)), json.loads(_unb64(claims)), signature


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def refused(authenticator: OidcAuthenticator, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await authenticator.authenticate(token)
    return caught.value.reason


# A valid token, and what it grants.


async def test_a_token_of_the_provider_names_its_client_and_its_scopes(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    principal = await authenticator.authenticate(provider.token("writer"))
    assert principal.subject == "writer"
    assert principal.permissions == {"projects:read", "projects:write"}
    reader = await authenticator.authenticate(provider.token("reader"))
    assert reader.permissions == {"projects:read"}


async def test_roles_map_to_permissions(settings: Settings, provider: Provider) -> None:
    mapped = OidcAuthenticator(
        oidc_settings(settings, provider, oidc_permission_map={"projects:write": ["edit", "x"]})
    )
    principal = await mapped.authenticate(provider.token("writer"))
    assert principal.permissions == {"projects:read", "edit", "x"}
    await mapped.close()


# The attacks: each token is refused with a 401's reason.


async def test_an_expired_token_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    token = provider.token("brief")  # the provider makes it live 1 s
    await authenticator.authenticate(token)
    await asyncio.sleep(2.1)
    assert "expired" in await refused(authenticator, token)


async def test_a_token_for_another_audience_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    token = provider.token("writer", resource="https://another-api.test.invalid/")
    assert parts(token)[1]["aud"] == "https://another-api.test.invalid/"
    assert "aud" in await refused(authenticator, token)


async def test_a_token_of_another_issuer_signed_with_the_real_key_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    header, claims, _ = parts(provider.token("writer"))
    forged = jwt.encode(header, claims | {"iss": "https://evil.test.invalid/"}, KEY)
    assert "iss" in await refused(authenticator, forged)


async def test_a_tampered_payload_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    token = provider.token("reader")
    header, claims, signature = token.split(".")
    more = json.loads(_unb64(claims)) | {"scope": "projects:read projects:write"}
    assert "signature" in await refused(authenticator, f"{header}.{b64(more)}.{signature}")


async def test_a_tampered_signature_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    header, claims, signature = provider.token("writer").split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    assert "signature" in await refused(authenticator, f"{header}.{claims}.{flipped}")


async def test_a_token_signed_by_an_unknown_key_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    header, claims, _ = parts(provider.token("writer"))
    stranger = signing_key("stranger")
    forged = jwt.encode(header | {"kid": "stranger"}, claims, stranger)
    assert "key" in await refused(authenticator, forged)
    # The same forger, naming the provider's key id: the signature does not verify.
    posing = jwt.encode(header, claims, signing_key(header["kid"]))
    assert "signature" in await refused(authenticator, posing)


async def test_alg_none_is_refused(authenticator: OidcAuthenticator, provider: Provider) -> None:
    header, claims, _ = parts(provider.token("writer"))
    for none in ("none", "None", "NONE"):
        unsigned = f"{b64(header | {'alg': none})}.{b64(claims)}."
        assert "algorithm" in await refused(authenticator, unsigned)


async def test_hmac_signed_with_the_providers_public_key_is_refused(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    """Algorithm confusion: the public key (as PEM, as its JWK) taken as an HMAC secret.
    Signed by hand: a JOSE library refuses to make such a token (joserfc does)."""
    header, claims, _ = parts(provider.token("writer"))
    public = RSAKey.import_key(KEY.as_dict(private=False))
    secrets = [public.as_pem(private=False), json.dumps(public.as_dict()).encode()]
    for secret in secrets:
        for alg, digest in (("HS256", "sha256"), ("HS384", "sha384"), ("HS512", "sha512")):
            signed = f"{b64(header | {'alg': alg})}.{b64(claims)}"
            mac = hmac.new(secret, signed.encode(), digest).digest()
            forged = f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
            assert "algorithm" in await refused(authenticator, forged)


def test_a_symmetric_or_encryption_key_in_the_jwks_is_never_used() -> None:
    """A JWKS that also lists an `oct` key (anyone who reads the set could sign with it)
    or an encryption key: only the signing public keys are kept, without private parts."""
    public = KEY.as_dict(private=False)
    document = {
        "keys": [
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "shared"},
            public | {"kid": "encrypting", "use": "enc"},
            KEY.as_dict(private=True) | {"kid": "leaked"},
            public,
        ]
    }
    keys = import_keys(document)
    assert set(keys) == {"first", "leaked"}
    assert not keys["leaked"].is_private


async def test_malformed_tokens_are_refused(authenticator: OidcAuthenticator) -> None:
    for garbage in ("", "abc", "a.b", "a.b.c", "...", "ü.ü.ü", "a.b.c.d.e", "x" * 20_000):
        await refused(authenticator, garbage)
    fake_header = b64({"alg": "RS256", "kid": ["first"]})
    await refused(authenticator, f"{fake_header}.e30.c2ln")


# Keys: cached, refetched at most once per interval, rotated.


async def test_made_up_key_ids_cost_the_provider_one_fetch_per_interval(
    authenticator: OidcAuthenticator, provider: Provider
) -> None:
    await authenticator.authenticate(provider.token("writer"))
    fetched = authenticator.keys.fetches
    header, claims, _ = parts(provider.token("writer"))
    for number in range(25):
        forged = jwt.encode(header | {"kid": f"made-up-{number}"}, claims, KEY)
        assert "key" in await refused(authenticator, forged)
    assert authenticator.keys.fetches == fetched  # within OIDC_JWKS_MIN_REFRESH_SECONDS


async def test_a_rotated_key_is_accepted_after_one_fetch(settings: Settings) -> None:
    old, new = signing_key("old"), signing_key("new")
    port = free_port()
    with running(jwks(old), port=port) as before:
        checker = OidcAuthenticator(
            oidc_settings(settings, before, oidc_jwks_min_refresh_seconds=0.5)
        )
        await checker.authenticate(before.token("writer"))
        assert checker.keys.fetches == 1
        old_token = before.token("writer")
    await asyncio.sleep(0.6)
    # The provider rotates: the new key signs, the old one still verifies.
    with running(jwks(new, old), port=port) as after:
        token = after.token("writer")
        assert parts(token)[0]["kid"] == "new"
        assert (await checker.authenticate(token)).subject == "writer"
        assert checker.keys.fetches == 2
        await checker.authenticate(old_token)  # still published: still accepted
        assert checker.keys.fetches == 2
    await checker.close()


async def test_with_the_provider_down_cached_keys_still_verify(settings: Settings) -> None:
    with running(jwks(KEY)) as provider:
        checker = OidcAuthenticator(
            oidc_settings(settings, provider, oidc_jwks_min_refresh_seconds=0.0)
        )
        token = provider.token("writer")
        await checker.authenticate(token)
        header, claims, _ = parts(token)
    # Stopped: known keys keep working, an unknown one cannot be looked up (503, retry).
    assert (await checker.authenticate(token)).subject == "writer"
    unknown = jwt.encode(header | {"kid": "rotated-in"}, claims, signing_key("rotated-in"))
    with pytest.raises(ProviderUnavailable) as down:
        await checker.authenticate(unknown)
    assert down.value.retry_after >= 1
    await checker.close()


async def test_a_provider_never_reached_is_a_503_not_a_500(settings: Settings) -> None:
    port = free_port()  # nothing listens there
    checker = OidcAuthenticator(
        settings.model_copy(
            update={
                "auth": "oidc",
                "oidc_issuer": f"http://127.0.0.1:{port}/",
                "oidc_audience": "a",
            }
        )
    )
    token = jwt.encode({"alg": "RS256", "kid": "k"}, {"sub": "x"}, signing_key("k"))
    with pytest.raises(ProviderUnavailable):
        await checker.authenticate(token)
    await checker.close()


# Through HTTP: the problems and their challenge.

probe = APIRouter()


@probe.get("/auth-probe/read", dependencies=[require("projects:read")])
async def read_probe(caller: CurrentPrincipal) -> dict[str, str]:
    return {"subject": caller.subject}


@probe.post("/auth-probe/write", dependencies=[require("projects:write")])
async def write_probe(caller: CurrentPrincipal) -> dict[str, str]:
    return {"subject": caller.subject}


def probed(settings: Settings) -> FastAPI:
    app = create_app(settings)
    app.include_router(probe)
    return app


@pytest.fixture
async def oidc_client(settings: Settings, provider: Provider) -> AsyncIterator[AsyncClient]:
    app = probed(oidc_settings(settings, provider))
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await app.state.authenticator.close()


async def test_no_token_is_a_401_with_the_bearer_challenge(oidc_client: AsyncClient) -> None:
    answer = await oidc_client.get("/auth-probe/read")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith('Bearer realm="')
    assert "error=" not in answer.headers["www-authenticate"]  # RFC 6750, 3.1: none sent


async def test_a_bad_token_is_a_401_naming_invalid_token(
    oidc_client: AsyncClient, provider: Provider
) -> None:
    header, claims, _ = parts(provider.token("writer"))
    attacks = [
        "not-a-jwt",
        f"{b64(header | {'alg': 'none'})}.{b64(claims)}.",
        jwt.encode(header | {"kid": "stranger"}, claims, signing_key("stranger")),
        jwt.encode(header, claims | {"aud": "elsewhere"}, KEY),
    ]
    for token in attacks:
        answer = await oidc_client.get(
            "/auth-probe/read", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 401, answer.text
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    malformed = await oidc_client.get("/auth-probe/read", headers={"Authorization": "Basic eA=="})
    assert malformed.status_code == 401
    assert 'error="invalid_request"' in malformed.headers["www-authenticate"]


async def test_permissions_decide_between_200_and_403(
    oidc_client: AsyncClient, provider: Provider
) -> None:
    reader = {"Authorization": f"Bearer {provider.token('reader')}"}
    assert (await oidc_client.get("/auth-probe/read", headers=reader)).json() == {
        "subject": "reader"
    }
    denied = await oidc_client.post("/auth-probe/write", headers=reader)
    assert denied.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    writer = {"Authorization": f"Bearer {provider.token('writer')}"}
    assert (await oidc_client.post("/auth-probe/write", headers=writer)).status_code == 200


async def test_the_openapi_document_declares_the_bearer_scheme_only_with_auth(
    oidc_client: AsyncClient, settings: Settings
) -> None:
    document = (await oidc_client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operation = document["paths"]["/auth-probe/write"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert {"401", "403"} <= set(operation["responses"])
    plain = probed(settings).openapi()
    assert "securitySchemes" not in plain["components"]
    assert "security" not in plain["paths"]["/auth-probe/write"]["post"]


async def test_without_auth_every_caller_is_anonymous_and_may_do_everything(
    settings: Settings,
) -> None:
    assert settings.auth == "none"
    transport = ASGITransport(app=probed(settings), raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.post("/auth-probe/write")).json() == {"subject": ""}
        sent = await client.post("/auth-probe/write", headers={"Authorization": "Bearer junk"})
        assert sent.status_code == 200


def test_the_settings_refuse_symmetric_algorithms_and_plain_http_in_production(
    settings: Settings,
) -> None:
    for wrong in (
        {"oidc_algorithms": ["HS256"]},
        {"oidc_algorithms": ["none"]},
        {"auth": "oidc", "oidc_issuer": "ftp://x", "oidc_audience": "a"},
        {
            "auth": "oidc",
            "oidc_issuer": "http://idp.example.com/",
            "oidc_audience": "a",
            "environment": "production",
            "cursor_secret": "k" * 40,
        },
    ):
        with pytest.raises(ValueError, match="OIDC"):
            Settings(database_url=settings.database_url, **wrong)


async def test_start_up_stops_when_auth_oidc_lacks_its_provider(settings: Settings) -> None:
    """The app imports without them (a service's tests bring their own callers), but a
    service that starts without them would refuse every caller: it does not start."""
    bare = settings.model_copy(update={"auth": "oidc", "oidc_issuer": "", "oidc_audience": ""})
    assert "OIDC_ISSUER" in (bare.missing_for_auth() or "")
    app = create_app(bare)
    with pytest.raises(SettingsError, match="OIDC_AUDIENCE"):
        async with app.router.lifespan_context(app):
            pass


def test_a_principal_is_what_routes_see() -> None:
    principal = Principal("alice", frozenset({"projects:read"}))
    assert principal.may("projects:read") and not principal.may("projects:write")
    assert not principal.anonymous
