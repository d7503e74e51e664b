import uuid
from typing import Annotated

from fastapi import APIRouter
from fastapi import Query
from fastapi import Request
from fastapi import Response
from fastapi import status

from ..api.pagination import Cursor
from ..api.pagination import CursorPage
from ..api.pagination import OffsetPage
from ..api.pagination import PageNumber
from ..api.pagination import PageSize
from ..api.problems import error_responses
from ..tasks.dependencies import Tasks
from ..tasks.models import TaskStatus
from ..tasks.schemas import TaskCreate
from ..tasks.schemas import TaskRead
from ..tasks.schemas import TaskSort
from .dependencies import Projects
from .schemas import ProjectCreate
from .schemas import ProjectRead
from .schemas import ProjectSort
from .schemas import ProjectUpdate
from .schemas import ProjectWithTasks

router = APIRouter(prefix="/projects", tags=["projects"], responses=error_responses(422, 503))


@router.get(
    "",
    response_model=OffsetPage[ProjectRead],
    summary="List projects, a page at a time",
)
async def list_projects(
    projects: Projects,
    size: PageSize,
    page: PageNumber = 1,
    sort: ProjectSort = "created_at",
) -> object:
    return await projects.page(page=page, size=size, sort=sort)


@router.get(
    "/cursor",
    response_model=CursorPage[ProjectRead],
    summary="List projects by cursor (stable under concurrent inserts)",
)
async def scroll_projects(
    projects: Projects,
    size: PageSize,
    cursor: Cursor = None,
    sort: ProjectSort = "created_at",
) -> object:
    return await projects.scroll(cursor=cursor, size=size, sort=sort)


@router.get(
    "/with-tasks",
    response_model=OffsetPage[ProjectWithTasks],
    summary="List projects with their live tasks (three statements per page)",
)
async def list_projects_with_tasks(
    projects: Projects, size: PageSize, page: PageNumber = 1
) -> object:
    return await projects.page_with_tasks(page=page, size=size)


@router.post(
    "",
    response_model=ProjectRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
async def create_project(
    data: ProjectCreate, projects: Projects, request: Request, response: Response
) -> object:
    project = await projects.create(data)
    response.headers["Location"] = request.app.url_path_for("get_project", project_id=project.id)
    return project


@router.get("/{project_id}", response_model=ProjectRead, responses=error_responses(404))
async def get_project(project_id: uuid.UUID, projects: Projects) -> object:
    return await projects.get(project_id)


@router.patch(
    "/{project_id}",
    response_model=ProjectRead,
    responses=error_responses(404, 409),
    summary="Change a project; `version` must be the one last read (else 409)",
)
async def update_project(project_id: uuid.UUID, data: ProjectUpdate, projects: Projects) -> object:
    values = data.model_dump(exclude_unset=True, exclude={"version"})
    return await projects.update(project_id, data.version, values)


@router.delete(
    "/{project_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
    summary="Soft-delete a project (restore brings it back)",
)
async def delete_project(project_id: uuid.UUID, projects: Projects) -> None:
    await projects.delete(project_id)


@router.post("/{project_id}/restore", response_model=ProjectRead, responses=error_responses(404))
async def restore_project(project_id: uuid.UUID, projects: Projects) -> object:
    return await projects.restore(project_id)


@router.get(
    "/{project_id}/tasks",
    response_model=OffsetPage[TaskRead],
    responses=error_responses(404),
    summary="List a project's tasks",
)
async def list_project_tasks(
    project_id: uuid.UUID,
    tasks: Tasks,
    size: PageSize,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status")] = None,
    page: PageNumber = 1,
    sort: TaskSort = "created_at",
) -> object:
    return await tasks.page_in_project(project_id, status=status, page=page, size=size, sort=sort)


@router.post(
    "/{project_id}/tasks",
    response_model=TaskRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(404, 409),
)
async def create_task(
    project_id: uuid.UUID, data: TaskCreate, tasks: Tasks, request: Request, response: Response
) -> object:
    task = await tasks.create(project_id, data)
    response.headers["Location"] = request.app.url_path_for("get_task", task_id=task.id)
    return task
