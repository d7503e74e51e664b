"""Path segments: `{name:key}` matches only what can be written as a key.

A router can then serve `/projects/export` next to `/projects/{project_id:key}` in any
order, for every method: `PATCH /projects/export` finds no PATCH route for that path
(405) instead of reading "export" as a project id (422). The package registers the
convertor on import (`kit/http/__init__.py`), before any router spells a path.
"""

from starlette.convertors import Convertor
from starlette.convertors import register_url_convertor

from ..db.keys import KEY_PATTERN


class KeyConvertor(Convertor[str]):
    """Matches `KEY_PATTERN` and leaves the text as it is: the route's `Key` parameter
    validates it, so a segment of the right shape but out of range is a 422."""

    regex = KEY_PATTERN

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: object) -> str:
        return str(value)


def register() -> None:
    register_url_convertor("key", KeyConvertor())
