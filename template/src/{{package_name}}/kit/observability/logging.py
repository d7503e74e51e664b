"""Log lines with the request id (and the trace id once traces are on), as text or JSON,
set up once per process.

uvicorn's own loggers (`uvicorn`, `uvicorn.error`, `uvicorn.access`) are handed to the
same handler, so a log collector reads one format. uvicorn configures them before it
imports the app, in each worker; with `--workers` the supervising process never
imports it, and its few lines (workers started and stopped) keep uvicorn's format.
An access log that uvicorn was told to leave out (`--no-access-log`, as the Dockerfile
runs it) stays out: uvicorn writes access lines whenever its logger has a handler.
"""

import json
import logging
from collections.abc import Callable
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC
from datetime import datetime
from typing import Any
from urllib.parse import quote
from urllib.parse import quote_plus

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
SQLALCHEMY_ECHO_LOGGER = "sqlalchemy.engine.Engine"
# `ids`: the request id, then the trace id once traces are on.
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(ids)s] %(name)s: %(message)s"
# The current trace's id (or `-`): set by kit/observability/tracing.py when it starts, so
# that this module imports no OpenTelemetry of its own.
trace_id_source: list[Callable[[], str]] = []


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served (or `-`), and with
    the id of the trace it belongs to (or `-`) once traces are on."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = record.request_id = record.ids = request_id_var.get()
        if trace_id_source:
            trace_id = record.trace_id = trace_id_source[0]()
            record.ids = f"{request_id} {trace_id}"
        return True


class RedactSecrets(logging.Filter):
    """Writes `***` for each secret the service holds (`secrets`), as written and as
    URL-quoted, in every line and traceback: whatever code logs one, a library quoting a
    connection string or an exception's text, the line shows no secret."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = {form for value in secrets for form in (value, quote(value, safe=""))}
        forms |= {quote_plus(form) for form in forms} | {quote(form) for form in forms}
        self.forms = sorted(forms, key=len, reverse=True)  # a secret before its parts

    def redact(self, text: str) -> str:
        for form in self.forms:
            if form in text:
                text = text.replace(form, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.forms:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatted once here; every formatter then uses this text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id, trace
    id when there is one, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        trace_id = getattr(record, "trace_id", "-")
        if trace_id != "-":
            line["trace_id"] = trace_id
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's access line: client, method, path, HTTP version, status.
            client, method, path, _version, status = args
            line |= {"client": client, "method": method, "path": path, "status": status}
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(
    level: str, log_format: str = "text", secrets: Iterable[str] = ()
) -> logging.Handler:
    """Log to stderr in `log_format` (`text` or `json`), with `***` for each of `secrets`;
    returns the handler."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecrets(secrets))
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # SQLAlchemy's `echo` (DB_ECHO) adds a handler printing plain lines to stdout unless
    # its logger has one: this one passes them on to the service's handler instead.
    echo = logging.getLogger(SQLALCHEMY_ECHO_LOGGER)
    if not echo.handlers:
        echo.addHandler(logging.NullHandler())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        # `--no-access-log` leaves uvicorn.access with no handler and no propagation.
        silenced = name == "uvicorn.access" and not logger.handlers and not logger.propagate
        logger.handlers[:] = []
        logger.propagate = not silenced
    return handler
