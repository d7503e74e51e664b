"""Full tier: Schemathesis, an outside fuzzer, against each variant's booted service.

It reads the service's `/openapi.json` as any client would and sends what the document
allows and what it forbids, with every check and every phase. The stateful phase chains
operations by the links Schemathesis infers from the document (the service declares
none): a create's id goes into the reads, updates and deletes that follow.
A fixed seed and a bounded number of examples per operation (tests/schemathesis.toml)
keep a run repeatable and short. What no schema can describe, the service's own signed
cursors and a well-formed consistency token, is asked of the booted service
before the run and fed to the cases Schemathesis calls valid by its hooks
(tests/schemathesis_hooks.py), so those cases are held to the usual statuses.
"""

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from .conftest import Rendered
from .harness.auth import callers
from .harness.boot import uvicorn
from .harness.databases import POSTGRES_DSN, scratch_database
from .harness.run import run

pytestmark = pytest.mark.full

SEED = 20261129
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
# The stateful phase's summary line: "API Links: 14 covered / 56 selected / 56 total (...)".
LINKS = re.compile(r"API Links:\s+(\d+) covered / (\d+) selected")


def test_fuzz(variant: Rendered, venv_for: Callable[[Rendered], Path], tmp_path: Path) -> None:
    bin_dir = venv_for(variant)
    log = tmp_path / "uvicorn.log"
    with scratch_database(variant.answers["database"], variant.name) as url:
        env = {"DATABASE_URL": url}
        migrated = run(bin_dir, variant.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        # A busy machine (the suite's other worker) can take well over 30 s to import a
        # service it never ran: waiting longer costs nothing once it answers.
        with (
            callers(variant.answers) as auth,  # with auth=oidc, runs with a real token
            uvicorn(
                bin_dir, variant.path, variant.package, env | auth.env, timeout=120, log=log
            ) as base,
        ):
            values = tmp_path / "values.json"
            issued = issued_values(base, variant.answers["database"], url, auth.at(base))
            values.write_text(json.dumps(issued))
            started = time.monotonic()
            fuzzed = schemathesis(base, workdir=tmp_path, values=values, headers=auth.headers)
            elapsed = time.monotonic() - started
    output = fuzzed.stdout + fuzzed.stderr
    links = LINKS.search(output)
    # Shown with -s or -rP: its cost, and how many of the links it found it followed.
    print(f"fuzzed {variant.name} in {elapsed:.1f}s; links: {links and links[0]}")
    assert fuzzed.returncode == 0, (
        f"Schemathesis failed on {variant.name} after {elapsed:.0f}s:\n{output}\n"
        f"--- server log (last 20,000 characters) ---\n{log.read_text()[-20_000:]}"
    )
    if variant.answers["example_domain"]:
        # Without links the stateful phase has nothing to chain and passes silently: it
        # must follow a large share of the links it found, not one. About a sixth of them
        # start from a restore, which the stateful phase never calls (schemathesis.toml),
        # so 45% of all is more than half of those it can follow.
        covered, selected = (int(links[1]), int(links[2])) if links else (0, 1)
        assert 20 * covered >= 9 * selected, f"few links chained:\n{output}"
    else:  # the skeleton: health probes only, nothing to chain
        assert not links, output


def _create(url: str, body: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
    created = httpx.post(url, json=body, timeout=30, headers=headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


def seed_two_rows(base: str, collection: str, headers: dict[str, str]) -> str:
    """Two rows of the example domain's `collection` (a page of one has a next one); a
    project's tasks under a project made for them. The collection's concrete path."""
    tag = uuid.uuid4().hex[:8]
    if collection.endswith("/projects"):
        for n in range(2):
            body = {"name": f"fuzz {n}", "slug": f"fuzz-{tag}-{n}"}
            _create(f"{base}{collection}", body, headers)
        return collection
    parents, _, _ = collection.partition("/{")
    assert collection.endswith("/tasks") and parents.endswith("/projects"), collection
    parent = _create(f"{base}{parents}", {"name": "fuzz parent", "slug": f"fuzz-{tag}"}, headers)
    concrete = f"{parents}/{parent['id']}/tasks"
    for n in range(2):
        _create(f"{base}{concrete}", {"title": f"fuzz task {n}"}, headers)
    return concrete


def issued_values(base: str, database: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """What the hooks feed to valid cases: cursors the service issued, for each cursor page
    and each of its sorts (over two rows it makes), and a well-formed consistency token."""
    spec = httpx.get(f"{base}/openapi.json", timeout=30).json()
    cursors: dict[str, dict[str, str]] = {}
    token_pattern = None
    for path, operations in spec["paths"].items():
        parameters = {p["name"]: p for p in operations.get("get", {}).get("parameters", [])}
        if "X-Consistency-Token" in parameters:
            token_pattern = parameters["X-Consistency-Token"]["schema"]["pattern"]
        if "cursor" not in parameters:
            continue
        page_path = seed_two_rows(base, path.removesuffix("/cursor"), headers)
        sorts = ["", *parameters.get("sort", {}).get("schema", {}).get("enum", [])]
        for sort in sorts:
            params = {"size": 1} | ({"sort": sort} if sort else {})
            page = httpx.get(
                f"{base}{page_path}/cursor", params=params, timeout=30, headers=headers
            )
            assert page.status_code == 200 and page.json()["next_cursor"], page.text
            cursors.setdefault(path, {})[sort] = page.json()["next_cursor"]
    token = None
    if token_pattern is not None and database == "postgresql":
        dsn = psycopg.conninfo.make_conninfo(POSTGRES_DSN, dbname=url.rsplit("/", 1)[1])
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        token = row[0] if row else None
    elif token_pattern is not None:
        # The document is the same on every backend; without replicas (never on MariaDB
        # or SQLite) a well-formed token is accepted and ignored.
        token = "0/0"
    return {"cursors": cursors, "token": token, "token_pattern": token_pattern}


def schemathesis(
    base: str, workdir: Path, values: Path, headers: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The `st` command of the template's own venv, run as an outside client would, with
    `headers` on every request (a bearer token, with auth).

    It runs in `workdir`, where Hypothesis keeps its files, so none land in the checkout."""
    command = [
        str(Path(sys.executable).parent / "st"),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        *(option for name, value in headers.items() for option in ("-H", f"{name}: {value}")),
    ]
    env = os.environ | {"SCHEMATHESIS_HOOKS": str(HOOKS), "CFS_FUZZ_VALUES": str(values)}
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
    )
