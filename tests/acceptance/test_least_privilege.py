"""The least-privileged role of ``config/parlant_maintainer_role.sql``, as an operator sets it up and uses it.

Each test runs the file as the superuser in its own database, then drives ``maintainer`` as
``parlant_maintainer``: ``check`` passes and every job runs on PostgreSQL 17 and later (MAINTAIN per
relation); taking one grant away fails ``check`` for exactly the jobs that need it, with a fix that, run,
makes it pass again. Before 17 the file says with a WARNING that only the cleanup is possible, and
``check`` says the same, job by job.

The role is cluster-wide: a leftover of an earlier run is dropped first, and the role is dropped after
the test. A ``parlant_maintainer`` that other databases of the server use is not ours to drop: the test
then uses it as it is and leaves it alone (its grants here go with the test's database).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.support.checks import JOBS, VIEW, Line, report
from tests.support.commands import maintainer
from tests.support.logs import json_lines
from tests.support.parlant import add_session, days_before_now, event_ids
from tests.support.paths import ROOT

ROLE_FILE = ROOT / "config" / "parlant_maintainer_role.sql"
ROLE = "parlant_maintainer"
MAINTAIN_PRIVILEGE_SINCE = 170000
FUNCTION = "maintain_parlant_indexes()"
NATIVE = {"MAINTAINER_JOBS__MAINTAIN_PARLANT_INDEXES__MODE": "native"}
MAINTENANCE_JOBS = (
    "update-statistics", "maintain-parlant-events", "refresh-agent-analytics", "maintain-parlant-indexes"
)

Conn = psycopg.Connection[Any]


@dataclasses.dataclass(frozen=True)
class Notice:
    severity: str
    message: str
    hint: str | None


@dataclasses.dataclass(frozen=True)
class MaintainerRole:
    url: str  # the test database, connecting as parlant_maintainer (trust authentication)
    notices: list[Notice]  # what running the role file printed


def _role_is_used_elsewhere(conn: Conn) -> bool:
    """Drop a parlant_maintainer left by an earlier run; True when it stays because other databases use it."""
    try:
        conn.execute("DROP ROLE IF EXISTS parlant_maintainer")
    except psycopg.errors.DependentObjectsStillExist:
        return True
    return False


def _has_powers_beyond_its_grants(conn: Conn) -> bool:
    row = conn.execute(
        "SELECT rolsuper OR rolbypassrls OR EXISTS (SELECT FROM pg_auth_members WHERE member = r.oid)"
        " FROM pg_roles AS r WHERE rolname = %s", (ROLE,)
    ).fetchone()
    return row == (True,)


@pytest.fixture
def maintainer_role(conn: Conn, database_url: str) -> Iterator[MaintainerRole]:
    """config/parlant_maintainer_role.sql, run as the superuser in the test's database."""
    used_elsewhere = _role_is_used_elsewhere(conn)
    if used_elsewhere and _has_powers_beyond_its_grants(conn):
        pytest.skip(f"{ROLE} exists on this server as a superuser or a member of other roles: not least-privileged")
    notices: list[Notice] = []

    def collect(diagnostic: psycopg.errors.Diagnostic) -> None:
        notices.append(Notice(str(diagnostic.severity_nonlocalized), str(diagnostic.message_primary),
                              diagnostic.message_hint))

    conn.add_notice_handler(collect)
    conn.execute(ROLE_FILE.read_text())
    conn.remove_notice_handler(collect)
    yield MaintainerRole(make_conninfo(database_url, user=ROLE), notices)
    if not used_elsewhere:
        conn.execute("DROP OWNED BY parlant_maintainer")
        conn.execute("DROP ROLE parlant_maintainer")


@pytest.fixture
def maintain_privilege(conn: Conn) -> None:
    if conn.info.server_version < MAINTAIN_PRIVILEGE_SINCE:
        pytest.skip("the MAINTAIN privilege exists from PostgreSQL 17")


@pytest.fixture
def no_maintain_privilege(conn: Conn) -> None:
    if conn.info.server_version >= MAINTAIN_PRIVILEGE_SINCE:
        pytest.skip("PostgreSQL 17 and later have the MAINTAIN privilege")


def check_as(role: MaintainerRole, **env: str) -> tuple[int, list[Line]]:
    result = maintainer("check", "--database-url", role.url, **env)
    return result.returncode, report(result.stdout)


def failures_of(lines: list[Line]) -> list[Line]:
    return [line for line in lines if line.status == "FAIL"]


def run_once(role: MaintainerRole, job: str, **env: str) -> list[dict[str, Any]]:
    """``maintainer run-once <job>`` as the role, which must succeed; its log lines."""
    result = maintainer("run-once", job, "--database-url", role.url, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = json_lines(result.stderr)
    assert [line["job"] for line in lines if line["event"] == "job_succeeded"] == [job]
    return lines


def scalar(conn: Conn, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def last_analyze(conn: Conn, table: str) -> Any:
    return scalar(conn, "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s", table)


def filenode(conn: Conn, index: str) -> int:
    return int(scalar(conn, "SELECT pg_relation_filenode(to_regclass(%s))", index))


def old_and_recent_events(conn: Conn) -> tuple[set[Any], set[Any]]:
    """(events the default policy deletes, events it keeps), none within weeks of the 90-day cutoff."""
    _, doomed = add_session(conn, "completed", days_before_now(200), [days_before_now(300), days_before_now(210)])
    _, recent = add_session(conn, "completed", days_before_now(10), [days_before_now(200), days_before_now(20)])
    _, active = add_session(conn, "active", None, [days_before_now(150)])
    return set(doomed), {*recent, *active}


def first_statement(fix: str) -> str:
    """The fix's own statement, without the alternatives it offers after ``; or``."""
    return fix.split("; or ")[0]


# PostgreSQL 17 and later: MAINTAIN per relation is enough for every job.


def test_role_file_runs_without_a_warning(maintain_privilege: None, maintainer_role: MaintainerRole) -> None:
    assert [notice for notice in maintainer_role.notices if notice.severity == "WARNING"] == []


def test_role_passes_every_check_of_every_job(maintain_privilege: None, maintainer_role: MaintainerRole) -> None:
    code, lines = check_as(maintainer_role)

    assert code == 0, lines
    # Advice only: the fixture lacks the indexes the nightly cleanup wants, like the application's schema.
    assert [(line.status, line.subject) for line in lines if line.status != "ok" or line.fix] == [
        ("warn", "parlant_event (created_at)"), ("warn", "parlant_session (ended_at)")]
    assert {line.job for line in lines} == {"server", *JOBS}
    [server] = [line for line in lines if line.job == "server" and line.subject == "version"]
    assert f"role {ROLE};" in server.detail


def test_role_deletes_old_events_and_keeps_the_others(
    conn: Conn, maintainer_role: MaintainerRole
) -> None:
    doomed, kept = old_and_recent_events(conn)

    run_once(maintainer_role, "cleanup-old-events")

    assert event_ids(conn) == kept
    assert not doomed & event_ids(conn)


def test_role_analyzes_the_parlant_tables(
    maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole
) -> None:
    tables = ("parlant_agent", "parlant_session", "parlant_event")
    assert [last_analyze(conn, table) for table in tables] == [None, None, None]

    run_once(maintainer_role, "update-statistics")

    assert None not in [last_analyze(conn, table) for table in tables]


def test_role_vacuums_the_event_table(maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole) -> None:
    last_vacuum = "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'parlant_event'"
    assert scalar(conn, last_vacuum) is None

    run_once(maintainer_role, "maintain-parlant-events")

    assert scalar(conn, last_vacuum) is not None


def test_role_refreshes_the_analytics_view_concurrently(
    maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole
) -> None:
    add_session(conn, "active", None, [days_before_now(2), days_before_now(1)])
    assert scalar(conn, "SELECT count(*) FROM parlant_agent_analytics_daily") == 0

    lines = run_once(maintainer_role, "refresh-agent-analytics")

    [succeeded] = [line for line in lines if line["event"] == "job_succeeded"]
    assert succeeded["mode"] == "concurrent"
    assert scalar(conn, "SELECT sum(events) FROM parlant_agent_analytics_daily") == 2


def test_role_runs_the_index_function(maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole) -> None:
    before = filenode(conn, "parlant_event_created_at_idx")

    run_once(maintainer_role, "maintain-parlant-indexes")

    assert filenode(conn, "parlant_event_created_at_idx") != before  # the fixture's function reindexes it


def test_role_reindexes_natively(maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole) -> None:
    indexes = ("parlant_event_pkey", "parlant_event_session_id_idx", "parlant_event_session_offset_idx",
               "parlant_event_created_at_idx")
    before = {index: filenode(conn, index) for index in indexes}

    lines = run_once(maintainer_role, "maintain-parlant-indexes", **NATIVE)

    [succeeded] = [line for line in lines if line["event"] == "job_succeeded"]
    assert succeeded["mode"] == "native"
    assert [index for index in indexes if filenode(conn, index) == before[index]] == []


@dataclasses.dataclass(frozen=True)
class Revocation:
    revoke: str
    failing: set[tuple[str, str]]  # (job, subject) of every check that must fail, and no other
    fix: str  # the statement the fix of each failing check starts with
    env: dict[str, str] = dataclasses.field(default_factory=dict)


REVOCATIONS = {
    "maintain-on-events": Revocation(
        "REVOKE MAINTAIN ON parlant_event FROM parlant_maintainer",
        {("update-statistics", "parlant_event"), ("maintain-parlant-events", "parlant_event"),
         ("maintain-parlant-indexes", FUNCTION)},
        "GRANT MAINTAIN ON ",
    ),
    "maintain-on-events-native": Revocation(
        "REVOKE MAINTAIN ON parlant_event FROM parlant_maintainer",
        {("update-statistics", "parlant_event"), ("maintain-parlant-events", "parlant_event"),
         ("maintain-parlant-indexes", "parlant_event_pkey, parlant_event_session_id_idx,"
          " parlant_event_session_offset_idx, parlant_event_created_at_idx"),
         ("maintain-parlant-indexes", "parlant_event")},
        "GRANT MAINTAIN ON ", NATIVE,
    ),
    "maintain-on-agents": Revocation(
        "REVOKE MAINTAIN ON parlant_agent FROM parlant_maintainer",
        {("update-statistics", "parlant_agent"), ("maintain-parlant-indexes", FUNCTION)},
        "GRANT MAINTAIN ON ",
    ),
    "maintain-on-view": Revocation(
        "REVOKE MAINTAIN ON parlant_agent_analytics_daily FROM parlant_maintainer", {("refresh-agent-analytics", VIEW)},
        f'GRANT MAINTAIN ON {VIEW} TO "{ROLE}"',
    ),
    "delete-on-events": Revocation(
        "REVOKE DELETE ON parlant_event FROM parlant_maintainer", {("cleanup-old-events", "parlant_event")},
        f"GRANT DELETE ON parlant_event TO {ROLE}",
    ),
    "select-on-sessions": Revocation(
        "REVOKE SELECT ON parlant_session FROM parlant_maintainer", {("cleanup-old-events", "parlant_session")},
        f"GRANT SELECT ON parlant_session TO {ROLE}",
    ),
    # Functions are executable by PUBLIC unless their owner says otherwise.
    "execute-on-function": Revocation(
        "REVOKE EXECUTE ON FUNCTION maintain_parlant_indexes() FROM PUBLIC, parlant_maintainer",
        {("maintain-parlant-indexes", FUNCTION)},
        f"GRANT EXECUTE ON FUNCTION {FUNCTION} TO {ROLE}",
    ),
}


@pytest.mark.parametrize("revocation", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_check_fails_exactly_the_checks_that_need_a_revoked_grant(
    maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole, revocation: Revocation
) -> None:
    conn.execute(revocation.revoke)

    code, lines = check_as(maintainer_role, **revocation.env)

    assert code == 1
    failed = failures_of(lines)
    assert {(line.job, line.subject) for line in failed} == revocation.failing
    assert len(failed) == len(revocation.failing)
    for line in failed:
        assert line.fix is not None
        assert line.fix.startswith(revocation.fix), line


@pytest.mark.parametrize("revocation", [
    pytest.param(revocation, id=name)
    for name, revocation in REVOCATIONS.items()
])
def test_running_the_fixes_check_prints_makes_it_pass_again(
    maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole, revocation: Revocation
) -> None:
    conn.execute(revocation.revoke)
    _, lines = check_as(maintainer_role, **revocation.env)
    fixes = {first_statement(line.fix) for line in failures_of(lines) if line.fix}
    assert fixes

    for fix in fixes:
        conn.execute(fix)

    code, lines = check_as(maintainer_role, **revocation.env)
    assert code == 0, failures_of(lines)


def test_function_check_names_only_the_table_the_role_may_not_maintain(
    maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole
) -> None:
    conn.execute("REVOKE MAINTAIN ON parlant_event FROM parlant_maintainer")

    _, lines = check_as(maintainer_role)

    [function] = [line for line in lines if (line.job, line.subject) == ("maintain-parlant-indexes", FUNCTION)]
    assert "parlant_event" in function.detail
    assert "parlant_agent" not in function.detail
    assert "parlant_session" not in function.detail


def test_vacuum_without_maintain_fails_naming_the_grant_instead_of_skipping_the_table(
    maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole
) -> None:
    conn.execute("REVOKE MAINTAIN ON parlant_event FROM parlant_maintainer")

    result = maintainer("run-once", "maintain-parlant-events", "--database-url", maintainer_role.url)

    assert result.returncode == 1
    [failed] = [line for line in json_lines(result.stderr) if line["event"] == "job_failed"]
    assert failed["sqlstate"] == "42501"
    assert "GRANT MAINTAIN ON parlant_event" in failed["error"]
    assert scalar(conn, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'parlant_event'") is None


# The run history: the file gives the role its own schema, maintainer, for it.


def test_runs_of_the_role_are_recorded_in_its_history_schema(conn: Conn, maintainer_role: MaintainerRole) -> None:
    old_and_recent_events(conn)

    lines = run_once(maintainer_role, "cleanup-old-events")

    assert [line for line in lines if line["level"] != "info"] == []
    history = conn.execute("SELECT to_regclass('maintainer.run_history')").fetchone()
    assert history is not None and history[0] is not None, "no maintainer.run_history table"
    assert conn.execute("SELECT job, status, rows_affected FROM maintainer.run_history").fetchall() == [
        ("cleanup-old-events", "succeeded", 2)
    ]


# Before PostgreSQL 17: no MAINTAIN privilege, so the role can run the cleanup and nothing else.


def test_role_file_warns_that_there_is_no_maintain_privilege(
    no_maintain_privilege: None, conn: Conn, maintainer_role: MaintainerRole
) -> None:
    [warning] = [notice for notice in maintainer_role.notices if notice.severity == "WARNING"]
    version = str(conn.info.parameter_status("server_version"))
    assert warning.message.startswith(f"PostgreSQL {version} has no MAINTAIN privilege")
    assert "cleanup-old-events" in warning.message
    assert warning.hint is not None
    assert "owner" in warning.hint


def test_role_check_fails_the_maintenance_jobs_with_the_ownership_fix_and_passes_the_cleanup(
    no_maintain_privilege: None, maintainer_role: MaintainerRole
) -> None:
    code, lines = check_as(maintainer_role)

    assert code == 1
    assert {(line.job, line.subject) for line in failures_of(lines)} == {
        ("update-statistics", "parlant_agent"), ("update-statistics", "parlant_session"),
        ("update-statistics", "parlant_event"), ("maintain-parlant-events", "parlant_event"),
        ("refresh-agent-analytics", VIEW), ("maintain-parlant-indexes", FUNCTION),
    }
    for line in failures_of(lines):
        assert line.fix is not None
        assert line.fix.startswith("connect as the owner of "), line
        assert "GRANT MAINTAIN" not in line.fix
    cleanup = [line for line in lines if line.job == "cleanup-old-events"]
    assert {(line.subject, line.status) for line in cleanup} == {
        ("parlant_event", "ok"), ("parlant_session", "ok"), ("parlant_event (session_id)", "ok"),
        ("parlant_event (created_at)", "warn"), ("parlant_session (ended_at)", "warn")}



@pytest.mark.parametrize(("job", "env"), [(job, {}) for job in MAINTENANCE_JOBS] + [
    ("maintain-parlant-indexes", NATIVE)
], ids=[*MAINTENANCE_JOBS, "maintain-parlant-indexes-native"])
def test_role_maintenance_run_fails_with_insufficient_privilege_and_the_ownership_fix(
    no_maintain_privilege: None, maintainer_role: MaintainerRole, job: str, env: dict[str, str]
) -> None:
    result = maintainer("run-once", job, "--database-url", maintainer_role.url, **env)

    assert result.returncode == 1
    [failed] = [line for line in json_lines(result.stderr) if line["event"] == "job_failed"]
    assert failed["sqlstate"] == "42501"
    assert "owner" in failed["error"]
    assert [line for line in json_lines(result.stderr) if line["event"] == "job_succeeded"] == []

