"""Logging: one JSON object per line, the contract alerting rules are written against.

Configured once, by the CLI. Event names are stable snake_case (``job_started``, ``job_failed``...);
values travel as fields, never inside the message. The README lists the catalogue.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import date, datetime, timedelta
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


def configure(
    log_format: Literal["auto", "json", "console"] = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    stream = stream or sys.stdout
    console = log_format == "console" or (log_format == "auto" and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer(default=json_value)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *([] if console else [structlog.processors.format_exc_info]),
            _redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(**context)
    return logger
