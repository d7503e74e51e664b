"""Full tier: a service made with `auth=oidc`, booted, behind a real OpenID provider.

The tokens are the provider's (tests/oidc/: oidc-provider on Node.js, client_credentials
with resource indicators). The kit's own tests (tests/kit/test_auth_oidc.py) try the
token attacks one by one; here the booted service shows what a client meets: 401 with
its challenge, 403 for a missing permission and for another owner's project, the
bearer scheme in the OpenAPI document, and the provider stopping without taking the
service down.
"""

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from .conftest import Rendered
from .harness.auth import callers
from .harness.boot import start_up, uvicorn
from .harness.databases import scratch_database
from .harness.run import run

pytestmark = pytest.mark.full

NAME = "sqlite-int-soft-delete-cache-traces-oidc"


def test_a_booted_service_answers_by_token_permission_and_owner(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    rendered = render(NAME)
    bin_dir = venv_for(rendered)
    with scratch_database("sqlite", "auth") as url:
        env = {"DATABASE_URL": url}
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        with (
            callers(rendered.answers) as auth,
            uvicorn(
                bin_dir, rendered.path, rendered.package, env | auth.env, log=tmp_path / "out"
            ) as base,
            httpx.Client(base_url=base, timeout=10) as http,
        ):
            writer, reader, other = auth.headers, auth.bearer("reader"), auth.bearer("other")
            anonymous = http.get("/api/v1/projects")
            assert anonymous.status_code == 401
            assert anonymous.headers["content-type"] == "application/problem+json"
            assert anonymous.headers["www-authenticate"].startswith('Bearer realm="')
            forged = http.get("/api/v1/projects", headers={"Authorization": "Bearer a.b.c"})
            assert forged.status_code == 401
            assert 'error="invalid_token"' in forged.headers["www-authenticate"]

            assert http.get("/api/v1/projects", headers=reader).status_code == 200
            body = {"name": "Owned", "slug": "owned"}
            denied = http.post("/api/v1/projects", json=body, headers=reader)
            assert denied.status_code == 403, denied.text
            assert 'scope="projects:write"' in denied.headers["www-authenticate"]

            created = http.post("/api/v1/projects", json=body, headers=writer)
            assert created.status_code == 201, created.text
            project = created.json()
            assert project["owner"] == "writer"
            path = f"/api/v1/projects/{project['id']}"
            change = {"version": project["version"], "name": "Taken over"}
            assert http.patch(path, json=change, headers=other).status_code == 403
            assert http.delete(path, headers=other).status_code == 403
            assert http.get(path, headers=other).json()["name"] == "Owned"
            changed = http.patch(path, json=change, headers=writer)
            assert changed.status_code == 200, changed.text

            document = http.get("/openapi.json").json()
            assert document["components"]["securitySchemes"]["bearer"]["type"] == "http"
            assert document["paths"]["/api/v1/projects"]["post"]["security"] == [{"bearer": []}]
            assert "security" not in document["paths"]["/health/ready"]["get"]

            assert auth.provider is not None
            auth.provider.stop()  # its keys are cached: known tokens keep working
            assert http.get(path, headers=writer).status_code == 200
            assert http.delete(path, headers=writer).status_code == 204


def test_auth_oidc_without_its_provider_stops_start_up_in_one_line(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    rendered = render(NAME)
    bin_dir = venv_for(rendered)
    with scratch_database("sqlite", "auth-unset") as url:
        server = start_up(bin_dir, rendered.path, rendered.package, {"DATABASE_URL": url})
    assert not server.ok
    assert "Traceback" not in server.output, server.output
    (line,) = [line for line in server.output.splitlines() if "cannot start:" in line]
    assert "OIDC_ISSUER" in line and "OIDC_AUDIENCE" in line, line
