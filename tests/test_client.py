"""Full tier: a typed client generated from each service's OpenAPI document works.

FastAPI's documentation sends its users to openapi-python-client for a Python client:
it reads the booted service's `/openapi.json` as any client generator would. The client
it writes is imported and drives the example domain end to end: create, read, list,
update, a stale update whose 409 comes back as the generated `Problem` model (an error
declared under a media type the service never sends reaches the client untyped), and
delete. The generated modules are named after the operation ids, so importing
`api.projects.create_project` also proves the ids are the short ones the routes name.
"""

import importlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from .conftest import Rendered
from .harness.auth import callers
from .harness.boot import uvicorn
from .harness.databases import scratch_database
from .harness.run import run
from .variants import VARIANTS

pytestmark = pytest.mark.full

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
WITH_DOMAIN = sorted(
    name for name, answers in VARIANTS.items() if answers.get("example_domain", True)
)
PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.mark.parametrize("name", WITH_DOMAIN)
def test_a_generated_client_round_trips_and_parses_problems(
    name: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    rendered = render(name)
    bin_dir = venv_for(rendered)
    with scratch_database(rendered.answers["database"], f"client-{name}") as url:
        env = {"DATABASE_URL": url}
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        log = tmp_path / "uvicorn.log"
        with (
            callers(rendered.answers) as auth,  # with auth=oidc, a real provider's token
            uvicorn(
                bin_dir, rendered.path, rendered.package, env | auth.env, timeout=120, log=log
            ) as base,
        ):
            document = httpx.get(f"{base}/openapi.json", timeout=10).raise_for_status().json()
            assert_errors_are_declared_as_sent(document)
            assert_operation_ids_are_short_and_unique(document)
            client = generate(document, tmp_path, "client_" + re.sub(r"\W", "_", name))
            round_trip(client, base, auth.at(base))


def assert_errors_are_declared_as_sent(document: dict[str, Any]) -> None:
    """Every error of the API is declared as `application/problem+json` with the Problem
    schema, and under no media type the service does not send. (The health probes' 503
    is their JSON report, not a problem.)"""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                where = (method, path, status)
                assert content.get("application/json", {}).get("schema") != PROBLEM, where
                if int(status) >= 400 and path.startswith("/api/"):
                    assert content == {"application/problem+json": {"schema": PROBLEM}}, where


def assert_operation_ids_are_short_and_unique(document: dict[str, Any]) -> None:
    ids = [
        operation["operationId"]
        for operations in document["paths"].values()
        for operation in operations.values()
    ]
    assert len(ids) == len(set(ids)), ids
    assert all("api_v1" not in id_ and not id_.endswith(("_get", "_post")) for id_ in ids), ids
    for expected in ("create_project", "get_project", "list_projects", "update_project"):
        assert expected in ids, ids


def generate(document: dict[str, Any], workdir: Path, package: str) -> ModuleType:
    """The client openapi-python-client writes for `document`, imported as `package`."""
    assert GENERATOR.exists(), (
        f"no {GENERATOR}: install the template's dev tools (`pip install --group dev`)"
    )
    spec = workdir / "openapi.json"
    spec.write_text(json.dumps(document))
    config = workdir / "client.json"
    config.write_text(json.dumps({"package_name_override": package}))
    command = [str(GENERATOR), "generate", "--path", str(spec), "--config", str(config)]
    command += ["--meta", "none", "--output-path", str(workdir / package)]
    # It formats what it writes with ruff, which it finds on PATH.
    env = {"PATH": f"{GENERATOR.parent}:/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8"}
    generated = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(workdir))
    try:
        importlib.invalidate_caches()
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(workdir))


def round_trip(client: ModuleType, base: str, headers: dict[str, str]) -> None:
    def operation(name: str) -> Any:
        return importlib.import_module(f"{client.__name__}.api.projects.{name}")

    models = importlib.import_module(f"{client.__name__}.models")
    create, get = operation("create_project"), operation("get_project")
    listing, update = operation("list_projects"), operation("update_project")
    delete = operation("delete_project")
    with client.Client(base_url=base, timeout=httpx.Timeout(10), headers=headers) as http:
        body = models.ProjectCreate(name="Typed", slug="typed-client")
        created = create.sync_detailed(client=http, body=body)
        assert created.status_code == 201, created.content
        project = created.parsed
        assert isinstance(project, models.ProjectRead) and project.slug == "typed-client"

        read = get.sync(project.id, client=http)
        assert isinstance(read, models.ProjectRead) and read.to_dict() == project.to_dict()

        page = listing.sync(client=http, size=10)
        assert isinstance(page, models.OffsetPageProjectRead), page
        assert [item.id for item in page.items] == [project.id] and page.total == 1

        change = models.ProjectUpdate(version=project.version, name="Renamed")
        updated = update.sync(project.id, client=http, body=change)
        assert isinstance(updated, models.ProjectRead), updated
        assert (updated.name, updated.version) == ("Renamed", project.version + 1)

        stale = update.sync_detailed(project.id, client=http, body=change)
        assert stale.status_code == 409, stale.content
        problem = stale.parsed
        assert isinstance(problem, models.Problem), (problem, stale.content)
        assert problem.status == 409 and problem.type_.endswith("/stale-version"), problem
        assert problem.request_id == stale.headers["x-request-id"]

        deleted = delete.sync_detailed(project.id, client=http)
        assert deleted.status_code == 204, deleted.content
        gone = get.sync_detailed(project.id, client=http)
        assert gone.status_code == 404 and isinstance(gone.parsed, models.Problem), gone.content
