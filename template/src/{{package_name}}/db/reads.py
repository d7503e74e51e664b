"""Deprecated: read sessions are `session.ReadSession` now."""

from .legacy import serve

__getattr__ = serve(
    __name__,
    {
        "READ_METHODS": "GET and HEAD requests get a ReadSession (api.dependencies.ReadSessionDep)",
        "ReadSession": "use db.session.ReadSession",
        "is_read_session": "annotate with db.session.ReadSession / WriteSession instead",
        "read_sessions": "use DatabaseManager.read_session()",
    },
    f"{__package__}.legacy",
)
