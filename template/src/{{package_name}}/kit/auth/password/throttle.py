"""Login attempts counted per account and per client address, in the database.

Every attempt counts, before its password is checked: N requests racing on N workers
are N increments of one row (an UPDATE holds the row's lock, or SQLite's file lock), so
no more than the limit of them ever reach the password check. A count lives for its
window (PASSWORD_THROTTLE_SECONDS from the first attempt); the attempt after the limit
is answered 429 with the seconds left. Accounts are keyed by the SHA-256 of the email,
known or not, so that the throttle answers alike for both; IPv6 clients by their /64,
which one host usually holds whole.
"""

import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta

from sqlalchemy import case
from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from ...db.session import WriteSession
from ...db.types import Timestamp
from ...settings import Settings
from .models import LoginThrottle


def account_key(email: str) -> str:
    return "account:" + hashlib.sha256(email.encode()).hexdigest()


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "address:" + address[:60]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "address:" + str(ip.ipv4_mapped)
        return "address:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "address:" + str(ip)


@dataclass(frozen=True)
class Throttle:
    per_account: int
    per_address: int
    window: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> "Throttle":
        return cls(
            settings.password_attempts_per_account,
            settings.password_attempts_per_address,
            timedelta(seconds=settings.password_throttle_seconds),
        )

    async def attempt(
        self, session: WriteSession, email: str | None, address: str, now: datetime
    ) -> int:
        """Count an attempt for `email` (None: a registration, counted for the address
        alone) from `address`, in the unit of work on `session`: 0 if it may go on,
        else the seconds until it may be tried again."""
        limits = {address_key(address): self.per_address}
        if email is not None:
            limits[account_key(email)] = self.per_account
        wait = 0
        for key in sorted(limits):  # one order for every worker: no deadlock between them
            attempts, started = await self._count(session, key, now)
            if attempts > limits[key]:
                left = (started + self.window - now).total_seconds()
                wait = max(wait, max(1, math.ceil(left)))
        return wait

    async def _count(self, session: WriteSession, key: str, now: datetime) -> tuple[int, datetime]:
        if not await self._increment(session, key, now):
            try:
                async with session.begin_nested():
                    await session.execute(
                        insert(LoginThrottle).values(key=key, attempts=1, window_start=now)
                    )
            except IntegrityError:  # another worker inserted it first: count on its row
                await self._increment(session, key, now)
        found = select(LoginThrottle.attempts, LoginThrottle.window_start).where(
            LoginThrottle.key == key
        )
        attempts, started = (await session.execute(found)).one()
        return attempts, started

    async def _increment(self, session: WriteSession, key: str, now: datetime) -> bool:
        """One more attempt on the row of `key`, or a new window if its own has ended;
        False when there is no row yet."""
        ended = LoginThrottle.window_start <= literal(now - self.window, Timestamp)
        statement = (
            update(LoginThrottle)
            .where(LoginThrottle.key == key)
            .values(
                attempts=case((ended, 1), else_=LoginThrottle.attempts + 1),
                window_start=case(
                    (ended, literal(now, Timestamp)), else_=LoginThrottle.window_start
                ),
            )
            .execution_options(synchronize_session=False)
        )
        result = await session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def clear_account(self, session: WriteSession, email: str) -> None:
        """Forget the account's attempts (a login succeeded); the address's stay."""
        await session.execute(
            delete(LoginThrottle)
            .where(LoginThrottle.key == account_key(email))
            .execution_options(synchronize_session=False)
        )
