"""The exceptions an operator can meet, each with the exit code the CLI turns it into."""

from __future__ import annotations

import psycopg


class MaintainerError(Exception):
    """Base of every error maintainer raises on purpose."""

    exit_code = 1


class ConfigError(MaintainerError):
    """Bad settings or usage: nothing was run, nothing was touched."""

    exit_code = 2


class JobFailed(MaintainerError):
    """A job started and could not finish; ``sqlstate`` is set when the server refused."""

    exit_code = 1

    def __init__(self, job: str, message: str, *, sqlstate: str | None = None, fix: str | None = None):
        self.job = job
        self.sqlstate = sqlstate
        self.fix = fix
        text = f"{job}: {message}"
        if fix:
            text += f" — fix: {fix}"
        super().__init__(text)

    @classmethod
    def from_database(cls, job: str, error: psycopg.Error) -> JobFailed:
        """Wrap a server or connection error, keeping its SQLSTATE and the hint PostgreSQL gave."""
        diag = error.diag
        message = (diag.message_primary or str(error)).strip()
        if diag.message_detail:
            message += f" ({diag.message_detail.strip()})"
        failure = cls(job, message, sqlstate=error.sqlstate, fix=diag.message_hint)
        failure.__cause__ = error
        return failure

