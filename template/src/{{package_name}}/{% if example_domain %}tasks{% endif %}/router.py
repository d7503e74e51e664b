from fastapi import APIRouter
from fastapi import Response
from fastapi import status

from ..entity import Key
from ..kit import ReadSession
from ..kit import WriteSession
from ..kit import error_responses
from ..kit.auth.dependencies import require
from ..projects.service import READ
from ..projects.service import WRITE
from .schemas import TaskRead
from .schemas import TaskUpdate
from .service import tasks

# A project's tasks are the project's: reading them needs its read permission, changing
# them its write permission.
router = APIRouter(prefix="/tasks", tags=["tasks"], responses=error_responses(422, 503))


@router.get(
    "/{task_id:key}",
    response_model=TaskRead,
    responses=error_responses(404),
    dependencies=[require(READ)],
)
async def get_task(task_id: Key, session: ReadSession) -> object:
    return Response(await tasks.read(session, task_id), media_type="application/json")


@router.patch(
    "/{task_id:key}",
    response_model=TaskRead,
    responses=error_responses(404, 409),
    summary="Change a task; `version` must be the one last read (else 409)",
    dependencies=[require(WRITE)],
)
async def update_task(task_id: Key, data: TaskUpdate, session: WriteSession) -> object:
    values = data.model_dump(exclude_unset=True, exclude={"version"})
    return await tasks.update(session, task_id, data.version, values)


@router.delete(
    "/{task_id:key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404),
    dependencies=[require(WRITE)],
)
async def delete_task(task_id: Key, session: WriteSession) -> None:
    await tasks.delete(session, task_id)


# A deleted task can come back where deletion is soft (entity.py's `Entity` has SoftDelete).
if tasks.restorable:

    @router.post(
        "/{task_id:key}/restore",
        response_model=TaskRead,
        responses=error_responses(404),
        dependencies=[require(WRITE)],
    )
    async def restore_task(task_id: Key, session: WriteSession) -> object:
        return await tasks.restore(session, task_id)
