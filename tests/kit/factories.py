"""Test data through the real repositories: unique values, overridable fields."""

import itertools
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .resource import Child, Parent, Shape

_serial = itertools.count(1)


def parent_data(**overrides: Any) -> dict[str, Any]:
    n = next(_serial)
    return {"name": f"Parent {n}", "slug": f"parent-{n}", "description": "", **overrides}


def child_data(**overrides: Any) -> dict[str, Any]:
    return {"title": f"Child {next(_serial)}", "status": "todo", "priority": 1, **overrides}


async def make_parent(session: AsyncSession, shape: Shape, **overrides: Any) -> Parent:
    return await shape.parents(session).create(**parent_data(**overrides))


async def make_child(
    session: AsyncSession, shape: Shape, parent: Parent, **overrides: Any
) -> Child:
    return await shape.children(session).create(parent_id=parent.id, **child_data(**overrides))
