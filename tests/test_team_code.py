"""Full tier: the rendered suite judges what the template owns, never the team's own code.

A team adds a resource its own way rather than the example's: a model with a plain
`UniqueConstraint("name")` (no message), a router with no tags and no declared errors,
a query parameter called `size` that is not a page size, and a route whose body is CSV
rather than JSON. With its migration made as the README says (`alembic revision
--autogenerate`), the service's whole suite passes, the team's test included: a
duplicate is a 409 whose default message names the constraint's column.

The template's own rules for its example domain (every constraint says what broke, and
is named by the convention) are checked here, on the render as made, not in the suite a
team inherits. And a team's own middleware and start-up step, added where `main.py`'s
docstring says, run where it says.
"""

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import admin_url, scratch_database
from .harness.guide import register_model, register_router
from .harness.run import run, service_suite
from .variants import VARIANTS

pytestmark = pytest.mark.full

RENDERS = ["default", "mysql-int-soft-delete", "sqlite-uuid-soft-delete-traces"]
WITH_DOMAIN = sorted(n for n, answers in VARIANTS.items() if answers.get("example_domain", True))

LABELS = {
    "__init__.py": '"""Labels: what the team tags its work with."""\n',
    "models.py": """\
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..entity import Entity


class Label(Entity):
    __tablename__ = "label"
    __table_args__ = (UniqueConstraint("name"),)

    name: Mapped[str] = mapped_column(String(50))
""",
    "schemas.py": """\
from pydantic import BaseModel
from pydantic import Field

from ..schemas import EntityRead


class LabelCreate(BaseModel):
    name: str = Field(min_length=1, max_length=50)


class LabelRead(EntityRead):
    name: str
""",
    "service.py": """\
from ..kit.db.session import WriteSession
from ..kit.db.session import unit_of_work
from ..kit.repository.resource import Repository
from ..kit.repository.resource import Service
from .models import Label
from .schemas import LabelCreate


class LabelRepository(Repository[Label]):
    model = Label


class LabelService(Service[Label]):
    repository = LabelRepository
    resource = "label"

    @unit_of_work
    async def create(self, session: WriteSession, data: LabelCreate) -> Label:
        return await LabelRepository(session).create(**data.model_dump())


labels = LabelService()
""",
    "router.py": """\
from typing import Literal

from fastapi import APIRouter
from fastapi import Request

from ..kit.http.dependencies import WriteSessionDep
from .schemas import LabelCreate
from .schemas import LabelRead
from .service import labels

router = APIRouter(prefix="/labels")
CSV = {"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}}


@router.post("", response_model=LabelRead, status_code=201)
async def create_label(data: LabelCreate, session: WriteSessionDep) -> object:
    return await labels.create(session, data)


@router.get("/{name}/swatch")
async def label_swatch(name: str, size: Literal["small", "large"] = "small") -> dict[str, str]:
    return {"name": name, "size": size}


@router.post("/import", status_code=202, openapi_extra=CSV)
async def import_labels(request: Request) -> dict[str, int]:
    return {"lines": len((await request.body()).splitlines())}
""",
}
TEAM_TEST = """\
from httpx import AsyncClient


async def test_a_second_label_of_a_name_is_a_409_naming_the_column(client: AsyncClient) -> None:
    assert (await client.post("/api/v1/labels", json={"name": "urgent"})).status_code == 201
    again = await client.post("/api/v1/labels", json={"name": "urgent"})
    assert again.status_code == 409
    assert again.json()["detail"] == "a record with the same name already exists"
    swatch = await client.get("/api/v1/labels/urgent/swatch", params={"size": "large"})
    assert swatch.json() == {"name": "urgent", "size": "large"}
    imported = await client.post("/api/v1/labels/import", content=b"a\\nb\\n")
    assert imported.json() == {"lines": 2}
"""


@pytest.mark.parametrize("name", RENDERS)
def test_the_rendered_suite_passes_with_the_teams_own_model_and_routes(
    name: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    rendered = render(name)
    bin_dir = venv_for(rendered)
    project = tmp_path / rendered.path.name
    shutil.copytree(rendered.path, project)  # the render is shared by the session's tests
    package = project / "src" / rendered.package
    (package / "labels").mkdir()
    for file, text in LABELS.items():
        (package / "labels" / file).write_text(text)
    (project / "tests" / "api" / "test_labels.py").write_text(TEAM_TEST)
    register_model(package / "models.py", "from .labels.models import Label")
    register_router(
        package / "main.py",
        "from .labels.router import router as labels_router\n    api.include_router(labels_router)",
    )
    database = rendered.answers["database"]
    with scratch_database(database, f"team-{name}") as url:
        for command in (("upgrade", "head"), ("revision", "--autogenerate", "-m", "add labels")):
            outcome = run(bin_dir, project, "alembic", *command, env={"DATABASE_URL": url})
            assert outcome.ok, outcome.output
    (migration,) = (project / "migrations" / "versions").glob("*_add_labels.py")
    assert "uq_label_name" in migration.read_text(), migration.read_text()

    suite, counts = service_suite(bin_dir, project, admin_url(database, tmp_path))
    failures = [line for line in suite.output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert suite.ok, "\n".join([suite.output[-4000:], *failures])
    assert "PASSED tests/api/test_labels.py::" in suite.output, suite.output[-3000:]
    assert counts.failed == counts.errors == counts.skipped == 0


# A middleware and a start-up and shutdown step of the team's own, in `main.py` as its
# docstring says: the step passed to `build_app(lifespan=...)`, the middleware added to
# the app before `return app`.
TEAM_APP = """\
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@asynccontextmanager
async def team_lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.team_steps = []
    async with app.state.db.engine.connect() as connection:  # the kit's database is open
        await connection.execute(text("SELECT 1"))
    app.state.team_steps.append("started")
    yield
    async with app.state.db.engine.connect() as connection:  # and still open here
        await connection.execute(text("SELECT 1"))
    app.state.team_steps.append("stopped")


class TeamHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Outside the kit's middleware: the request id is already on the response.
                names = {name for name, _ in message["headers"]}
                seen = b"yes" if b"x-request-id" in names else b"no"
                message["headers"] = [*message["headers"], (b"x-team-saw-request-id", seen)]
            await send(message)

        await self.app(scope, receive, send_marked)
"""
TEAM_APP_TEST = """\
from httpx import ASGITransport, AsyncClient

from {package}.main import create_app
from {package}.settings import Settings


async def test_the_teams_middleware_and_start_up_step(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state.team_steps == ["started"]
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/health/live")
    assert app.state.team_steps == ["started", "stopped"]
    assert response.headers["x-team-saw-request-id"] == "yes"
"""


def test_a_team_adds_its_middleware_and_start_up_step_where_main_py_says(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    rendered = render("sqlite-int-hard-delete")
    bin_dir = venv_for(rendered)
    project = tmp_path / rendered.path.name
    shutil.copytree(rendered.path, project)  # the render is shared by the session's tests
    package = project / "src" / rendered.package
    (package / "team_app.py").write_text(TEAM_APP)
    main = package / "main.py"
    text = main.read_text()
    assert "lifespan=" in text and "app.add_middleware(" in text  # the docstring's advice
    for old, new in (
        (
            "from .kit.app import build_app\n",
            "from .kit.app import build_app\nfrom .team_app import TeamHeader, team_lifespan\n",
        ),
        (
            '        version="0.1.0",\n',
            '        version="0.1.0",\n        lifespan=team_lifespan,\n',
        ),
        ("    return app\n", "    app.add_middleware(TeamHeader)\n    return app\n"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    main.write_text(text)
    test = project / "tests" / "test_team_app.py"
    test.write_text(TEAM_APP_TEST.format(package=rendered.package))
    suite, counts = service_suite(
        bin_dir, project, admin_url("sqlite", tmp_path), "tests/test_team_app.py"
    )
    assert suite.ok, suite.output[-4000:]
    assert counts.passed == 1, suite.output[-3000:]


# The example domain's constraints (not the kit's users' tables of auth=password), those
# that declare a message, and every name.
MESSAGES = """\
import json
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint
from {package} import models
from {package}.kit.db.constraints import constraint_messages

kinds = (UniqueConstraint, CheckConstraint, ForeignKeyConstraint)
domain = [models.metadata.tables[name] for name in ("project", "task")]
declared = sorted(
    str(c.name) for table in domain for c in table.constraints if isinstance(c, kinds)
)
names = sorted(
    str(named.name)
    for table in models.metadata.tables.values()
    for named in [*table.constraints, *table.indexes]
)
ours = {{str(c.name) for table in domain for c in table.constraints}}
with_message = sorted(name for name in constraint_messages() if name in ours)
print(json.dumps({{"declared": declared, "with_message": with_message, "names": names}}))
"""


@pytest.mark.parametrize("name", WITH_DOMAIN)
def test_the_example_domains_constraints_say_what_broke_and_are_named_by_convention(
    name: str, render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    rendered = render(name)
    script = MESSAGES.format(package=rendered.package)
    outcome = run(venv_for(rendered), rendered.path / "src", "python", "-c", script)
    assert outcome.ok, outcome.output
    found = json.loads(outcome.output.strip().splitlines()[-1])
    assert found["declared"] and found["declared"] == found["with_message"], found
    prefixes = ("pk_", "uq_", "ck_", "fk_", "ix_")
    assert all(name.startswith(prefixes) for name in found["names"]), found["names"]
