"""Structured logs: one JSON object per line (``log_format = "json"``), and the request id each line carries.

``configure_logging`` sends every logger's records (uvicorn's included) to stderr through one
handler: ``JsonFormatter`` writes ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
the ``request_id`` of the request being answered (a context variable set by ``api.metrics``),
any of ``method``, ``route``, ``status``, ``duration_ms`` given as ``extra``, and ``exception``
with the traceback's text. ``log_format = "text"`` keeps the plain lines (the default).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone

# The id of the request this task is answering ("" outside a request).
request_id: ContextVar[str] = ContextVar("urbandata_request_id", default="")

# Fields a log call may add with ``extra=``; each is written when present.
EXTRA_FIELDS = ("method", "route", "path", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that configure handlers of their own (uvicorn's, at server start): theirs are replaced by ours.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = getattr(record, "request_id", None) or request_id.get()
        if current:
            entry["request_id"] = current
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _OurHandler(logging.StreamHandler):
    """The handler configure_logging installs (found again, and replaced, by a second call)."""


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Log to stderr as ``log_format`` says ("json" or "text"); calling it again replaces the earlier setup.

    "text" changes nothing when logging was never configured here (Python's default: warnings and
    errors as plain lines), so a command's output stays as it was.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _OurHandler)]
    if log_format != "json" and not ours:
        return
    for handler in ours:
        root.removeHandler(handler)
    handler = _OurHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(min(root.level, level) if root.level else level)
    if log_format == "json":
        logging.captureWarnings(True)  # a Python warning becomes a JSON line too, not a bare text line
        for name in SERVER_LOGGERS:  # uvicorn's own handlers would write plain text beside ours
            server_logger = logging.getLogger(name)
            server_logger.handlers.clear()
            server_logger.propagate = True
