"""The exceptions an operator can meet, each with the exit code the CLI turns it into."""

from __future__ import annotations

import psycopg

from maintainer.job import SkipReason
from maintainer.retry import is_transient


class MaintainerError(Exception):
    """Base of every error maintainer raises on purpose."""

    exit_code = 1


class ConfigError(MaintainerError):
    """Bad settings or usage: nothing was run, nothing was touched."""

    exit_code = 2


class JobFailed(MaintainerError):
    """A job started and could not finish; ``sqlstate`` is set when the server refused."""

    exit_code = 1

    def __init__(
        self, job: str, message: str, *, sqlstate: str | None = None, fix: str | None = None, transient: bool = False
    ):
        self.job = job
        self.sqlstate = sqlstate
        self.fix = fix
        self.transient = transient
        text = f"{job}: {message}"
        if fix:
            text += f" — fix: {fix}"
        super().__init__(text)

    @classmethod
    def from_database(
        cls, job: str, error: psycopg.Error, *, context: str | None = None, fix: str | None = None
    ) -> JobFailed:
        """Wrap a server or connection error, keeping its SQLSTATE and the hint PostgreSQL gave."""
        diag = error.diag
        message = (diag.message_primary or str(error)).strip()
        if diag.message_detail:
            message += f" ({diag.message_detail.strip()})"
        if context:
            message = f"{context}: {message}"
        failure = cls(job, message, sqlstate=error.sqlstate, fix=fix or diag.message_hint,
                      transient=is_transient(error))
        failure.__cause__ = error
        return failure


class LockHeld(MaintainerError):
    """The run was skipped: another run holds the job's lock (``lock_held``), or another replica already
    ran the scheduled run it was for (``already_ran``). EX_TEMPFAIL: try again later."""

    exit_code = 75

    def __init__(self, message: str, reason: SkipReason):
        self.reason = reason
        super().__init__(message)
