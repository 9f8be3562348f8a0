"""What the server says while a job works: a WARNING fails the run, a NOTICE is logged.

VACUUM and ANALYZE report a table they skipped (no privilege, not a table) with a WARNING, not an error,
and so may anything else a custom job runs: maintenance that PostgreSQL did not do must not be logged as
done. One mechanism for every job, built-in or custom: the runner watches the job's connection while it
works.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.errors import Diagnostic
from structlog.typing import FilteringBoundLogger

from maintainer.catalog import maintain_fix, missing
from maintainer.errors import JobFailed

# PostgreSQL 15: skipping "t" --- only table or database owner can vacuum it; 16 and later: permission
# denied to vacuum "t", skipping it. Either names the relation in double quotes.
_SKIPPED_RELATION = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class _Warning:
    message: str
    sqlstate: str | None
    hint: str | None


@contextmanager
def watching(job: str, conn: psycopg.Connection[Any], log: FilteringBoundLogger) -> Iterator[None]:
    """Log each NOTICE the server sends while the block runs; raise JobFailed after it if any WARNING came,
    with the first WARNING's text and a fix."""
    warnings: list[_Warning] = []

    def keep(diagnostic: Diagnostic) -> None:
        # The diagnostic lives only during this callback: copy what the error and the log need.
        severity, message = diagnostic.severity_nonlocalized, diagnostic.message_primary or ""
        if severity == "WARNING":
            warnings.append(_Warning(message, diagnostic.sqlstate, diagnostic.message_hint
                                     or diagnostic.message_detail))
        elif severity == "NOTICE":
            log.info("server_notice", message=message, sqlstate=diagnostic.sqlstate)

    conn.add_notice_handler(keep)
    try:
        yield
    finally:
        conn.remove_notice_handler(keep)
    if warnings:
        first = warnings[0]
        more = f" (and {len(warnings) - 1} more warnings)" if len(warnings) > 1 else ""
        raise JobFailed(job, f"PostgreSQL warned: {first.message}{more}", sqlstate=first.sqlstate,
                        fix=first.hint or _fix(conn, first.message))


def _fix(conn: psycopg.Connection[Any], message: str) -> str | None:
    """For a relation the server skipped for want of privilege: how to let the role maintain it."""
    if conn.closed or "skipping" not in message:
        return None
    try:
        names = [name for name in _SKIPPED_RELATION.findall(message) if not missing(conn, [name])]
        return maintain_fix(conn, names) if names else None
    except psycopg.Error:  # the connection is not in a state to ask: the warning's text must do
        return None
