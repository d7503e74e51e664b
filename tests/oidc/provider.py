"""A real OpenID provider for the tests: panva's `oidc-provider` (npm) on loopback.

`running(...)` installs it once from package-lock.json (`npm ci` into the harness's
cache, keyed by the lock and provider.mjs), starts it on a free loopback port, waits
until its discovery document answers and stops it when the block ends. Tokens come from
it by a real grant: `provider.token("writer")` is a client_credentials grant with a
resource indicator, which it answers with a JWT access token (RFC 9068).

Without Node.js and npm the tests that need it fail, saying how to get them.
"""

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).parent
FILES = ("package.json", "package-lock.json", "provider.mjs")
CACHE = Path(os.environ.get("CFS_CACHE_DIR", Path.home() / ".cache" / "copier-fastapi-sqlalchemy"))
# The API the tokens are for, by default (their `aud`).
AUDIENCE = "https://api.test.invalid/"
SECRET = "test-secret-of-a-test-provider-0123456789"
# The scopes each client of provider.mjs may ask for, asked by default.
SCOPES = {
    "writer": "projects:read projects:write",
    "reader": "projects:read",
    "other": "projects:read projects:write",
    "brief": "projects:read projects:write",
}
START_SECONDS = 30
INSTALL_SECONDS = 300


def _needs(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(
            f"{tool} is not on PATH, and the authentication tests run a real OpenID provider "
            "(oidc-provider, on Node.js 20 or later): install Node.js and npm "
            "(Debian: apt-get install nodejs npm)",
            pytrace=False,
        )
    return found


def install() -> Path:
    """The directory holding provider.mjs and its node_modules, installed once."""
    stamp = hashlib.sha256(b"".join((HERE / name).read_bytes() for name in FILES)).hexdigest()
    target = CACHE / "oidc-provider" / stamp[:16]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{stamp[:16]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / ".installed").exists():
            npm = _needs("npm")
            target.mkdir(exist_ok=True)
            for name in FILES:
                shutil.copyfile(HERE / name, target / name)
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=target,
                capture_output=True,
                text=True,
                timeout=INSTALL_SECONDS,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci of the test provider failed:\n{done.stderr[-3000:]}")
            (target / ".installed").touch()
    return target


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Provider:
    issuer: str
    port: int
    process: "subprocess.Popen[bytes]"

    def token(self, client: str, *, resource: str = AUDIENCE, scope: str = "") -> str:
        """An access token for `client` (provider.mjs names them), by client_credentials."""
        form = {
            "grant_type": "client_credentials",
            "resource": resource,
            "scope": scope or SCOPES[client],
        }
        answer = httpx.post(f"{self.issuer}token", data=form, auth=(client, SECRET), timeout=30)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def running(
    jwks: dict[str, Any] | None = None, *, port: int | None = None, alg: str = "RS256"
) -> Iterator[Provider]:
    """A provider signing with the private keys `jwks` holds (generated when None)."""
    node = _needs("node")
    directory = install()
    port = port or free_port()
    issuer = f"http://127.0.0.1:{port}/"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OIDC_PORT": str(port),
        "OIDC_ISSUER": issuer,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_ALG": alg,
        "NODE_ENV": "test",
    }
    if jwks is not None:
        env["OIDC_JWKS"] = json.dumps(jwks)
    process = subprocess.Popen(
        [node, "provider.mjs"],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    provider = Provider(issuer, port, process)
    try:
        _wait(provider)
        yield provider
    finally:
        provider.stop()


def _wait(provider: Provider) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if provider.process.poll() is not None:
            error = provider.process.stderr.read().decode() if provider.process.stderr else ""
            pytest.fail(f"the test provider exited at start:\n{error[-3000:]}")
        try:
            discovery = f"{provider.issuer}.well-known/openid-configuration"
            if httpx.get(discovery, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    provider.stop()
    pytest.fail(f"the test provider did not answer within {START_SECONDS} s")
