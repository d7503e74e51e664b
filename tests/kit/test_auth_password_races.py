"""The password machinery with several workers: two apps of their own (own pools, as two
pods have) on one database. The login throttle holds across them, racing attempts never
pass its limit, and of two requests refreshing one token exactly one wins."""

import asyncio
from collections import Counter

import pytest
from httpx import AsyncClient
from service.settings import Settings

from .password import cheap, login, password_app, register


@pytest.fixture
def limited(settings: Settings, clean_users: None) -> Settings:
    return cheap(settings, password_attempts_per_account=3, password_attempts_per_address=6)


def throttled(response: object) -> int:
    """The Retry-After of a 429 problem."""
    assert getattr(response, "status_code", None) == 429, getattr(response, "text", response)
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-type"] == "application/problem+json"
    wait = int(headers["retry-after"])
    assert 0 < wait <= 900
    return wait


async def test_the_account_throttle_holds_across_two_apps(limited: Settings) -> None:
    async with password_app(limited) as one, password_app(limited, address="192.0.2.20") as two:
        await register(one, "target@example.com")
        for client in (one, two, one):
            assert (await login(client, "target@example.com", "guess one two")).status_code == 401
        # The limit is reached: even the right password waits, on either app.
        throttled(await login(two, "target@example.com"))
        throttled(await login(one, "target@example.com"))
        # An unknown email is throttled alike: the throttle tells no email from another.
        for client in (one, two, one):
            assert (await login(client, "ghost@example.com", "guess one two")).status_code == 401
        throttled(await login(two, "ghost@example.com", "guess one two"))


async def test_the_address_throttle_counts_every_account_from_one_address(
    limited: Settings,
) -> None:
    async with (
        password_app(limited) as one,
        password_app(limited) as same_address,
        password_app(limited, address="2001:db8::1") as elsewhere,
        password_app(limited, address="2001:db8::2") as same_network,
    ):
        await register(elsewhere, "victim@example.com")  # counts for elsewhere's /64
        for n in range(6):
            client = one if n % 2 else same_address
            answer = await login(client, f"spray-{n}@example.com", "guess one two")
            assert answer.status_code == 401
        throttled(await login(one, "victim@example.com"))
        # Another address may go on; IPv6 clients are counted by their /64.
        assert (await login(elsewhere, "victim@example.com")).status_code == 200
        for n in range(4):
            await login(same_network, f"v6-{n}@example.com", "guess one two")
        throttled(await login(elsewhere, "victim@example.com"))


async def test_a_successful_login_clears_the_accounts_count(
    settings: Settings, clean_users: None
) -> None:
    roomy = cheap(settings, password_attempts_per_account=3, password_attempts_per_address=100)
    async with password_app(roomy) as client:
        await register(client, "forgetful@example.com")
        for _ in range(2):
            await login(client, "forgetful@example.com", "guess one two")
        assert (await login(client, "forgetful@example.com")).status_code == 200
        for _ in range(3):
            assert (await login(client, "forgetful@example.com", "x" * 12)).status_code == 401


async def test_racing_attempts_never_pass_the_limit(settings: Settings, clean_users: None) -> None:
    """Twelve attempts at once, over two apps, on an account allowed three: three reach
    the password check, nine are refused before it."""
    racing = cheap(settings, password_attempts_per_account=3, password_attempts_per_address=100)
    async with password_app(racing) as one, password_app(racing) as two:
        await register(one, "raced@example.com")

        async def attempt(client: AsyncClient) -> int:
            return (await login(client, "raced@example.com", "guess one two")).status_code

        answers = await asyncio.gather(*(attempt((one, two)[n % 2]) for n in range(12)))
    assert Counter(answers) == {401: 3, 429: 9}


async def test_of_two_refreshes_of_one_token_exactly_one_wins(limited: Settings) -> None:
    async with password_app(limited) as one, password_app(limited) as two:
        await register(one, "twice@example.com")
        tokens = (await login(one, "twice@example.com")).json()
        body = {"refresh_token": tokens["refresh_token"]}
        answers = await asyncio.gather(
            one.post("/auth/refresh", json=body), two.post("/auth/refresh", json=body)
        )
        assert sorted(a.status_code for a in answers) == [200, 401]
        # The loser's use was a reuse: the family ends, the winner's new token with it.
        (winner,) = [a.json() for a in answers if a.status_code == 200]
        again = await one.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})
        assert again.status_code == 401


async def test_registrations_count_against_the_address(limited: Settings) -> None:
    """Each registration costs a hash: an address gets as many as it has login attempts."""
    async with password_app(limited) as one, password_app(limited) as two:
        for n in range(6):
            created = await register((one, two)[n % 2], f"new-{n}@example.com")
            assert created.status_code == 201, created.text
        throttled(await register(one, "one-too-many@example.com"))
        throttled(await login(two, "new-0@example.com"))


async def test_a_window_that_ended_starts_counting_again(
    settings: Settings, clean_users: None
) -> None:
    """The count and its window start are set in one UPDATE (on MariaDB, whose later
    assignments read the earlier ones' new values, in the order that keeps it right)."""
    short = cheap(settings, password_attempts_per_account=2, password_throttle_seconds=1)
    async with password_app(short) as client:
        await register(client, "patient@example.com")
        for _ in range(2):
            await login(client, "patient@example.com", "guess one two")
        assert throttled(await login(client, "patient@example.com")) == 1
        await asyncio.sleep(1.1)
        assert (await login(client, "patient@example.com")).status_code == 200
