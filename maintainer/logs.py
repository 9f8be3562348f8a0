"""Logging: one JSON object per line, the contract alerting rules are written against.

Configured once, by the CLI. Event names are stable snake_case (``job_started``, ``job_failed``...);
values travel as fields, never inside the message. The README lists the catalogue.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, WrappedLogger

_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/?#@\s]*:)[^@\s]*@")
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide passwords in connection URLs and key=value connection strings."""
    return _KEYWORD_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def _redact_secrets(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    # Last line of defence: a driver message or an exception text may quote the connection string.
    return {key: redact(value) if isinstance(value, str) else value for key, value in event_dict.items()}


def json_value(value: Any) -> Any:
    """Timestamps as ISO 8601 and ids as text: fields alerting rules can parse, never a Python repr."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


LIBRARY_EVENT = "library_message"


def _library_message(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """A record of the standard library's logging (APScheduler, psycopg, warnings) as one stable event, at
    the record's own level."""
    record: logging.LogRecord = event_dict["_record"]
    event_dict["message"] = event_dict.pop("event")
    return {"event": LIBRARY_EVENT, "logger": record.name, **event_dict}


def configure(
    log_format: Literal["auto", "json", "console"] = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """structlog, and the standard library's logging through the same processors, to ``stream``: in JSON
    mode every line written is one JSON object."""
    stream = stream or sys.stdout
    console = log_format == "console" or (log_format == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=not os.environ.get("NO_COLOR")) if console  # no-color.org
        else structlog.processors.JSONRenderer(default=json_value)
    )
    _closed.clear()
    logging.disable(logging.NOTSET)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([] if console else [structlog.processors.format_exc_info]),
        _redact_secrets,
    ]
    structlog.configure(
        processors=[_drop_when_closed, structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_library_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *shared, renderer],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    # APScheduler's own notices of a run are maintainer's events (job_started, job_skipped ...); its errors stay.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.captureWarnings(True)


_closed = threading.Event()


def close() -> None:
    """No more lines: a daemon's last line stays its last, whatever a thread still running would log."""
    _closed.set()
    logging.disable(logging.CRITICAL)


def _drop_when_closed(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    if _closed.is_set():
        raise structlog.DropEvent
    return event_dict


def log_unhandled_exceptions() -> None:
    """An exception nobody caught, in the main thread or another, is logged as one event, not a traceback."""
    def main_thread(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        get_logger().critical("unhandled_exception", exc_info=(kind, error, traceback))

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit:
            get_logger().critical("unhandled_exception", thread=args.thread.name if args.thread else None,
                                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = main_thread
    threading.excepthook = other_thread


def get_logger(**context: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(**context)
    return logger
