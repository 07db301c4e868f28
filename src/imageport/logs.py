"""Structured logs: one JSON object per line on stderr, for people and log shippers alike.

Every record carries ``ts`` (UTC, the service's time form), ``level``, ``logger`` and ``msg``;
fields passed with ``extra=`` are added when they are among :data:`FIELDS` (so a request line
has ``request_id``, ``api``, ``method``, ``path``, ``status``, ``duration_ms``, ``project``).
Anything else in ``extra`` is ignored rather than guessed at, which keeps the lines' shape
stable. Code running for a request or a job need not pass ids itself: the middleware runs each
request inside :func:`bound` ``(request_id=...)`` and the job queue's runner each job inside
``bound(job_id=...)``, and every line logged there (also by library code, also in threads
started with a copy of the context, as Starlette's thread pool does) carries that id.
:func:`configure` installs the formatter once, on the root logger, for ``imageport serve``
(uvicorn's own loggers then log through it too).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

#: The fields copied from a record's ``extra`` into the JSON line, in this order.
FIELDS = (
    "request_id",
    "api",
    "method",
    "path",
    "query",
    "status",
    "duration_ms",
    "websocket",
    "project",
    "access_key",
    "job_id",
    "image_id",
    "job_type",
    "phase",
    "error_code",
)

_MAX_MESSAGE = 4000
#: Loggers of libraries that log only warnings and errors.
QUIET = ("alembic", "uvicorn.error")


_BOUND: ContextVar[Mapping[str, str] | None] = ContextVar("imageport_log_ids", default=None)


@contextlib.contextmanager
def bound(**ids: str) -> Iterator[None]:
    """Add ``ids`` (``request_id``, ``job_id``) to every line logged inside the context."""
    token = _BOUND.set({**(_BOUND.get() or {}), **ids})
    try:
        yield
    finally:
        _BOUND.reset(token)


def _time_text(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (never raises on odd values: they become strings)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": _time_text(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage()[:_MAX_MESSAGE],
        }
        ids = _BOUND.get() or {}
        for name in FIELDS:
            value = record.__dict__.get(name, ids.get(name))
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)[-_MAX_MESSAGE:]
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record (ours and uvicorn's) as JSON lines to ``stream`` (stderr).

    Replaces the root logger's handlers, so calling it twice does not double the lines; returns
    the handler (tests remove it again).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # their start-up chatter (each migration step, "Started server process" twice) says
    # nothing an operator needs; their warnings and errors still come through
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler
