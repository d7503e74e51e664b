import uuid

from fastapi import APIRouter
from fastapi import status

from ..api.problems import error_responses
from .dependencies import Tasks
from .schemas import TaskRead
from .schemas import TaskUpdate

router = APIRouter(prefix="/tasks", tags=["tasks"], responses=error_responses(422, 503))


@router.get("/{task_id}", response_model=TaskRead, responses=error_responses(404))
async def get_task(task_id: uuid.UUID, tasks: Tasks) -> object:
    return await tasks.get(task_id)


@router.patch(
    "/{task_id}",
    response_model=TaskRead,
    responses=error_responses(404, 409),
    summary="Change a task; `version` must be the one last read (else 409)",
)
async def update_task(task_id: uuid.UUID, data: TaskUpdate, tasks: Tasks) -> object:
    values = data.model_dump(exclude_unset=True, exclude={"version"})
    return await tasks.update(task_id, data.version, values)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
async def delete_task(task_id: uuid.UUID, tasks: Tasks) -> None:
    await tasks.delete(task_id)


@router.post("/{task_id}/restore", response_model=TaskRead, responses=error_responses(404))
async def restore_task(task_id: uuid.UUID, tasks: Tasks) -> object:
    return await tasks.restore(task_id)
