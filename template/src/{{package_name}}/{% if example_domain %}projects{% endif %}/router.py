from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi import Response
from fastapi import status
from fastapi.responses import StreamingResponse

from ..entity import Key
from ..kit import CursorPage
from ..kit import OffsetPage
from ..kit import ReadSession
from ..kit import WriteSession
from ..kit import error_responses
from ..kit.auth.dependencies import CurrentPrincipal
from ..kit.auth.dependencies import require
from ..kit.http.pagination import ChildrenPerParent
from ..kit.http.pagination import Cursor
from ..kit.http.pagination import Cursors
from ..kit.http.pagination import PageNumber
from ..kit.http.pagination import PageSize
from ..tasks.models import TaskStatus
from ..tasks.schemas import TaskCreate
from ..tasks.schemas import TaskRead
from ..tasks.schemas import TaskSort
from ..tasks.service import tasks
from .schemas import ProjectCreate
from .schemas import ProjectRead
from .schemas import ProjectSort
from .schemas import ProjectUpdate
from .schemas import ProjectWithTasks
from .service import READ
from .service import WRITE
from .service import projects

# Reads need READ, writes WRITE, and changing a project its owner (service.py). Without
# authentication (AUTH=none) every caller passes: the permissions and the owner check let
# the anonymous caller through, and the projects it makes are nobody's (owner null).
router = APIRouter(prefix="/projects", tags=["projects"], responses=error_responses(422, 503))
EXPORT_BATCH = 500


@router.get(
    "",
    response_model=OffsetPage[ProjectRead],
    summary="List projects, a page at a time",
    dependencies=[require(READ)],
)
async def list_projects(
    session: ReadSession,
    size: PageSize,
    page: PageNumber = 1,
    sort: ProjectSort = "created_at",
) -> object:
    return await projects.page(session, page=page, size=size, sort=sort)


@router.get(
    "/cursor",
    response_model=CursorPage[ProjectRead],
    summary="List projects by cursor (stable under concurrent inserts)",
    dependencies=[require(READ)],
)
async def scroll_projects(
    session: ReadSession,
    codec: Cursors,
    size: PageSize,
    cursor: Cursor = None,
    sort: ProjectSort = "created_at",
) -> object:
    return await projects.scroll(session, codec, cursor=cursor, size=size, sort=sort)


@router.get(
    "/export",
    summary="Every live project as NDJSON, streamed in batches",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
    dependencies=[require(READ)],
)
async def export_projects(session: ReadSession) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        after = None
        try:
            while True:
                batch = await projects.batch(session, after=after, size=EXPORT_BATCH)
                # A short read per batch: closed, the session holds no connection while
                # a slow reader takes the batch; the next statement takes one again.
                await session.close()
                for project in batch:
                    yield ProjectRead.model_validate(project).model_dump_json().encode() + b"\n"
                if len(batch) < EXPORT_BATCH:
                    return
                after = (batch[-1].created_at, batch[-1].id)
        finally:
            await session.close()  # a reader that hung up mid-stream

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get(
    "/with-tasks",
    response_model=OffsetPage[ProjectWithTasks],
    summary="List projects with their first live tasks (the rest by `tasks_next`)",
    dependencies=[require(READ)],
)
async def list_projects_with_tasks(
    session: ReadSession,
    codec: Cursors,
    size: PageSize,
    tasks: ChildrenPerParent,
    page: PageNumber = 1,
) -> object:
    return await projects.page_with_tasks(session, codec, page=page, size=size, tasks=tasks)


@router.post(
    "",
    response_model=ProjectRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
    dependencies=[require(WRITE)],
)
async def create_project(
    data: ProjectCreate,
    session: WriteSession,
    request: Request,
    response: Response,
    caller: CurrentPrincipal,
) -> object:
    # The anonymous caller (AUTH=none) is nobody: its projects have no owner.
    project = await projects.create(session, data, owner=caller.subject or None)
    response.headers["Location"] = request.app.url_path_for("get_project", project_id=project.id)
    return project


@router.get(
    "/{project_id:key}",
    response_model=ProjectRead,
    responses=error_responses(404),
    dependencies=[require(READ)],
)
async def get_project(project_id: Key, session: ReadSession) -> object:
    return Response(await projects.read(session, project_id), media_type="application/json")


@router.patch(
    "/{project_id:key}",
    response_model=ProjectRead,
    responses=error_responses(404, 409),
    summary="Change a project (its owner only); `version` must be the one last read (else 409)",
    dependencies=[require(WRITE)],
)
async def update_project(
    project_id: Key, data: ProjectUpdate, session: WriteSession, caller: CurrentPrincipal
) -> object:
    values = data.model_dump(exclude_unset=True, exclude={"version"})
    return await projects.update_owned(session, caller, project_id, data.version, values)


@router.delete(
    "/{project_id:key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
    summary="Delete a project and its tasks (its owner only; where deletion is soft, "
    "restore brings them back)",
    dependencies=[require(WRITE)],
)
async def delete_project(project_id: Key, session: WriteSession, caller: CurrentPrincipal) -> None:
    await projects.delete_owned(session, caller, project_id)


# A deleted project can come back where deletion is soft (entity.py's `Entity` has
# SoftDelete), and its tasks with it.
if projects.restorable:

    @router.post(
        "/{project_id:key}/restore",
        response_model=ProjectRead,
        responses=error_responses(404),
        dependencies=[require(WRITE)],
    )
    async def restore_project(
        project_id: Key, session: WriteSession, caller: CurrentPrincipal
    ) -> object:
        return await projects.restore_owned(session, caller, project_id)


@router.get(
    "/{project_id:key}/tasks",
    response_model=OffsetPage[TaskRead],
    responses=error_responses(404),
    summary="List a project's tasks",
    dependencies=[require(READ)],
)
async def list_project_tasks(
    project_id: Key,
    session: ReadSession,
    size: PageSize,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status")] = None,
    page: PageNumber = 1,
    sort: TaskSort = "created_at",
) -> object:
    return await tasks.page_in_project(
        session, project_id, status=status, page=page, size=size, sort=sort
    )


@router.get(
    "/{project_id:key}/tasks/cursor",
    response_model=CursorPage[TaskRead],
    responses=error_responses(404),
    summary="List a project's tasks by cursor (stable under concurrent inserts)",
    dependencies=[require(READ)],
)
async def scroll_project_tasks(
    project_id: Key,
    session: ReadSession,
    codec: Cursors,
    size: PageSize,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status")] = None,
    cursor: Cursor = None,
    sort: TaskSort = "created_at",
) -> object:
    return await tasks.scroll_in_project(
        session, codec, project_id, status=status, cursor=cursor, size=size, sort=sort
    )


@router.post(
    "/{project_id:key}/tasks",
    response_model=TaskRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409),
    dependencies=[require(WRITE)],
)
async def create_task(
    project_id: Key,
    data: TaskCreate,
    session: WriteSession,
    request: Request,
    response: Response,
) -> object:
    task = await tasks.create(session, project_id, data)
    response.headers["Location"] = request.app.url_path_for("get_task", task_id=task.id)
    return task
