"""Passwords hashed with Argon2id (pwdlib), off the event loop, a few at a time.

A hash costs tens of milliseconds of CPU and PASSWORD_HASH_MEMORY_KIB of memory: it runs
in a worker thread, so other requests go on, and at most `HASHES_AT_ONCE` run together,
so a burst of logins queues instead of taking the process's memory.
"""

import logging
import os
import secrets

import anyio
from anyio import to_thread
from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher

from ...settings import Settings

log = logging.getLogger(__name__)

# Hashes computed at once by one process: one a core it may run on (a container's CPU
# set, not the host's count).
HASHES_AT_ONCE = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


class Passwords:
    """Hashes and verifies with the cost the settings give; a hash of another cost
    verifies, and comes back made again with this one (`verify`)."""

    def __init__(self, settings: Settings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.password_hash_time_cost,
                    memory_cost=settings.password_hash_memory_kib,
                    parallelism=settings.password_hash_parallelism,
                ),
            )
        )
        # What an unknown email's password is checked against: the same work as a real
        # user's, so the answer's time does not tell that the email has no account.
        self.dummy_hash = self._hash.hash(secrets.token_urlsafe(16))
        self._limiter: anyio.CapacityLimiter | None = None

    def _limit(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(HASHES_AT_ONCE)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await to_thread.run_sync(self._hash.hash, password, limiter=self._limit())

    async def verify(self, password: str, stored: str | None) -> tuple[bool, str | None]:
        """Whether `password` matches `stored` (None: no such user; the dummy hash is
        checked, and the answer is False), and the hash to store instead when `stored`
        was made with another cost."""
        against = self.dummy_hash if stored is None else stored
        try:
            valid, updated = await to_thread.run_sync(
                self._hash.verify_and_update, password, against, limiter=self._limit()
            )
        except PwdlibError:  # a stored value that is no hash this service makes
            log.warning("a stored password hash could not be read; the login is refused")
            return False, None
        return (valid and stored is not None), (updated if stored is not None else None)
