"""Where the database URL comes from, and what of it reaches libpq, as an operator deploys maintainer.

A Kubernetes or Docker secret arrives as a file (MAINTAINER_DATABASE_URL_FILE); a platform that sets
libpq's PGHOST/PGUSER/... needs no URL at all; parameters in the URL (sslmode, connect_timeout...) pass
through to libpq, except application_name, which always names the job. Every URL carries a password
that trust authentication ignores, and that must appear in no output.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

import jobs
from maintainer.job import Result, RunContext
from maintainer.runner import run_job
from tests.support import commands
from tests.support.commands import url_with_password
from tests.support.logs import json_lines, named
from tests.support.parlant import add_session, days_before_now
from tests.support.settings import load_settings

PASSWORD = "s3cret-connection-pw"
BAD_URL = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"
DRY_RUN = ("run-once", "cleanup-old-events", "--dry-run", "--format", "json")
CLEANUP = jobs.REGISTRY.jobs["cleanup-old-events"]
LIBPQ_VARIABLES = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}




def url(database_url: str, **query: str) -> str:
    """The test database as a URL with a password and ``query`` parameters."""
    with_password = url_with_password(database_url, PASSWORD)
    if not query:
        return with_password
    return f"{with_password}{'' if with_password.endswith('?') else '&'}{urlencode(query)}"


@pytest.fixture
def old_events(conn: psycopg.Connection[Any]) -> int:
    """Events of the test database that the retention audit reports: proof that a run connected to it."""
    add_session(conn, "completed", days_before_now(200), [days_before_now(300)] * 3)
    return 3


def audited_events(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    events: int = json.loads(result.stdout)["would_delete"]["events"]
    return events


def maintainer(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command without the caller's libpq variables either; the password never in its output."""
    result = commands.maintainer(*args, without_libpq=True, **env)
    assert PASSWORD not in result.stdout + result.stderr
    return result


def test_database_url_is_read_from_the_file_named_by_MAINTAINER_DATABASE_URL_FILE(
    tmp_path: Path, database_url: str, old_events: int
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(url(database_url) + "\n")

    result = maintainer(*DRY_RUN, MAINTAINER_DATABASE_URL_FILE=str(secret))

    assert audited_events(result) == old_events


def test_missing_url_file_is_refused_with_exit_2_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "absent"

    result = maintainer(*DRY_RUN, MAINTAINER_DATABASE_URL_FILE=str(missing))

    assert result.returncode == 2
    assert f"MAINTAINER_DATABASE_URL_FILE={missing}" in result.stderr
    assert named(json_lines(result.stderr), "job_started") == []


@pytest.mark.parametrize("source", ["MAINTAINER_DATABASE_URL", "DATABASE_URL", "--database-url"])
def test_url_from_the_environment_or_the_flag_wins_over_the_url_file(
    tmp_path: Path, database_url: str, old_events: int, source: str
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(BAD_URL + "\n")
    good = url(database_url)

    if source == "--database-url":
        result = maintainer(*DRY_RUN, "--database-url", good, MAINTAINER_DATABASE_URL_FILE=str(secret))
    else:
        result = maintainer(*DRY_RUN, MAINTAINER_DATABASE_URL_FILE=str(secret), **{source: good})

    assert audited_events(result) == old_events


@pytest.mark.parametrize("source", ["MAINTAINER_DATABASE_URL_FILE", "MAINTAINER_DATABASE_URL"])
def test_empty_url_is_refused_with_exit_2_naming_where_it_came_from(tmp_path: Path, source: str) -> None:
    secret = tmp_path / "database-url"
    secret.write_text("\n")  # a secret whose value was never filled in
    value = str(secret) if source == "MAINTAINER_DATABASE_URL_FILE" else ""

    # PGPORT=1: while the bug lasts, libpq's defaults reach no server (PGPORT alone does not count as "configured").
    result = maintainer(*DRY_RUN, PGPORT="1", **{source: value})

    assert result.returncode == 2, result.stderr
    assert source in result.stderr


def test_libpq_environment_alone_finds_the_database(database_url: str, old_events: int) -> None:
    params = conninfo_to_dict(database_url)
    libpq_env = {variable: str(params[key]) for key, variable in LIBPQ_VARIABLES.items() if params.get(key)}
    assert {"PGHOST", "PGUSER", "PGDATABASE"} <= set(libpq_env)  # a Unix socket directory is a valid PGHOST

    result = maintainer(*DRY_RUN, **libpq_env, PGPASSWORD=str(params.get("password") or PASSWORD))

    assert audited_events(result) == old_events


def test_no_url_and_no_libpq_environment_is_refused_with_exit_2_naming_where_to_set_it() -> None:
    result = maintainer(*DRY_RUN)

    assert result.returncode == 2
    assert "MAINTAINER_DATABASE_URL" in result.stderr
    assert "PGHOST" in result.stderr
    assert named(json_lines(result.stderr), "job_started") == []


def _connection_state(ctx: RunContext) -> Result:
    row = ctx.conn.execute(
        "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
        " WHERE a.pid = pg_backend_pid()"
    ).fetchone()
    assert row is not None
    libpq = ctx.conn.info.get_parameters()  # what libpq was given, not what we hoped
    return Result(summary={"application_name": row[0], "ssl": row[1], "sslmode": libpq.get("sslmode"),
                           "connect_timeout": libpq.get("connect_timeout")}, report="")


def test_connection_parameters_in_the_url_reach_libpq_but_application_name_names_the_job(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = dataclasses.replace(CLEANUP, run=_connection_state)
    settings = load_settings(database_url=url(database_url, sslmode="disable", application_name="x",
                                              connect_timeout="3"))

    state = run_job(settings, probe).result.summary

    assert state == {"application_name": "maintainer:cleanup-old-events", "ssl": False, "sslmode": "disable",
                     "connect_timeout": "3"}
    output = capsys.readouterr()
    assert PASSWORD not in output.out + output.err


def test_sslmode_require_reaches_libpq_and_fails_against_a_server_without_ssl(database_url: str) -> None:
    if str(conninfo_to_dict(database_url).get("host", "")).startswith("/"):
        pytest.skip("libpq never negotiates SSL over a Unix-domain socket, so sslmode=require cannot fail there")

    result = maintainer(*DRY_RUN, MAINTAINER_DATABASE_URL=url(database_url, sslmode="require"))

    assert result.returncode == 1
    [failed] = named(json_lines(result.stderr), "job_failed", job="cleanup-old-events")
    assert "SSL" in failed["error"]
    assert "SSL" in result.stderr.splitlines()[-1]  # the closing one-line message an operator reads first


@pytest.mark.parametrize(("query", "named"), [
    ({"connect_timeout": "abc"}, "connect_timeout must be a whole number"),
    ({"keepalives_idle": "soon"}, "keepalives_idle must be a whole number"),
])
def test_check_refuses_a_url_with_a_malformed_option_with_exit_2_naming_it_and_its_source(
    database_url: str, query: dict[str, str], named: str
) -> None:
    result = maintainer("check", MAINTAINER_DATABASE_URL=url(database_url, **query))

    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr
    assert "from MAINTAINER_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
