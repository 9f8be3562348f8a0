"""``maintainer check`` as an operator runs it after a deploy: one line per prerequisite, exit 1 on any FAIL.

Each test breaks the fixture database the way production breaks (a dropped index, a dropped function, an
invalid index left by a failed concurrent build, a role that owns nothing) and reads the report a person
reads: the ``ok``/``FAIL`` lines on stdout and the ``fix:`` line under each failure.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support.checks import JOBS, VIEW, check, failures, lines_of, report
from tests.support.commands import maintainer
from tests.support.logs import json_lines
from tests.support.parlant import add_session, days_ago

PASSWORD = "pw-s3cret"
MAINTAIN_PRIVILEGE_SINCE = 170000












def role_of(url: str) -> str:
    return str(conninfo_to_dict(url)["user"])


def is_populated(conn: psycopg.Connection[Any], relation: str) -> bool:
    row = conn.execute("SELECT relispopulated FROM pg_class WHERE oid = to_regclass(%s)", (relation,)).fetchone()
    assert row is not None
    populated: bool = row[0]
    return populated


def is_valid_index(conn: psycopg.Connection[Any], index: str) -> bool:
    row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (index,)).fetchone()
    assert row is not None
    valid: bool = row[0]
    return valid


@pytest.fixture
def invalid_index(conn: psycopg.Connection[Any]) -> str:
    """An invalid index on parlant_event, left behind by a failed CREATE UNIQUE INDEX CONCURRENTLY."""
    add_session(conn, "active", None, [days_ago(2), days_ago(1)])  # two events, the same event_type
    name = "parlant_event_type_key"
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON parlant_event (event_type)").format(
            sql.Identifier(name)))
    assert not is_valid_index(conn, name)
    return name


@pytest.fixture
def grant_pg_maintain(conn: psycopg.Connection[Any], other_role_url: str) -> Iterator[Callable[[], None]]:
    """Makes the other role a member of pg_maintain (PostgreSQL 17+), a cluster-wide grant undone after the test."""
    if conn.info.server_version < MAINTAIN_PRIVILEGE_SINCE:
        pytest.skip("pg_maintain exists from PostgreSQL 17")
    role = sql.Identifier(role_of(other_role_url))

    def grant() -> None:
        conn.execute(sql.SQL("GRANT pg_maintain TO {}").format(role))

    yield grant
    conn.execute(sql.SQL("REVOKE pg_maintain FROM {}").format(role))


def test_healthy_database_passes_with_an_ok_line_for_every_job(database_url: str) -> None:
    result = check(database_url)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = report(result.stdout)
    # Advice only: like the application's schema, the fixture's index on created_at lacks session_id, and it has
    # no index on the sessions' end.
    assert [(line.status, line.subject) for line in lines if line.status != "ok" or line.fix] == [
        ("warn", "parlant_event (created_at)"), ("warn", "parlant_session (ended_at)")]
    assert {line.job for line in lines} == {"server", *JOBS}
    [server] = [line for line in lines_of(result.stdout, "server") if line.subject == "version"]
    assert server.detail.startswith("PostgreSQL ")
    [refresh] = lines_of(result.stdout, "refresh-agent-analytics")
    assert refresh.detail == "refresh will be concurrent, using unique index parlant_agent_analytics_daily_key"


def test_json_report_lists_the_same_checks_with_their_fields(database_url: str) -> None:
    result = check(database_url, "--format", "json")

    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed.keys() == {"ok", "checks"}
    assert parsed["ok"] is True
    for entry in parsed["checks"]:
        assert entry.keys() == {"job", "subject", "ok", "detail", "fix", "warning"}
        assert entry["ok"] is True
        # The fixture, like the application's schema, lacks the indexes the nightly cleanup wants: advice only.
        assert (entry["fix"] is None) is not entry["warning"]
    assert [entry["subject"] for entry in parsed["checks"] if entry["warning"]] == [
        "parlant_event (created_at)", "parlant_session (ended_at)"]
    text = report(check(database_url).stdout)
    assert [(entry["job"], entry["subject"], entry["detail"]) for entry in parsed["checks"]] == [
        (line.job, line.subject, line.detail) for line in text
    ]


def test_json_report_of_a_failure_is_not_ok_and_carries_the_fix(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("DROP FUNCTION maintain_parlant_indexes()")

    result = check(database_url, "--format", "json")

    assert result.returncode == 1
    parsed = json.loads(result.stdout)
    assert parsed["ok"] is False
    [failed] = [entry for entry in parsed["checks"] if not entry["ok"]]
    assert failed["job"] == "maintain-parlant-indexes"
    assert 'mode = "native"' in failed["fix"]


def test_view_without_unique_index_fails_with_the_create_unique_index_on_its_key(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("DROP INDEX parlant_agent_analytics_daily_key")

    result = check(database_url)

    assert result.returncode == 1
    [failed] = failures(result.stdout)
    assert (failed.job, failed.subject) == ("refresh-agent-analytics", VIEW)
    assert "cannot refresh concurrently" in failed.detail
    assert "unique index" in failed.detail
    assert failed.fix is not None
    assert "CREATE UNIQUE INDEX" in failed.fix
    assert f"{VIEW} (agent_id, day)" in failed.fix


def test_unpopulated_view_passes_as_a_first_population_and_stays_unpopulated(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("REFRESH MATERIALIZED VIEW parlant_agent_analytics_daily WITH NO DATA")

    result = check(database_url)

    assert result.returncode == 0, result.stdout + result.stderr
    [refresh] = lines_of(result.stdout, "refresh-agent-analytics")
    assert refresh.status == "ok"
    assert "first population" in refresh.detail
    assert not is_populated(conn, VIEW)


def test_missing_function_fails_suggesting_native_mode(database_url: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("DROP FUNCTION maintain_parlant_indexes()")

    result = check(database_url)

    assert result.returncode == 1
    [failed] = failures(result.stdout)
    assert (failed.job, failed.subject) == ("maintain-parlant-indexes", "maintain_parlant_indexes()")
    assert "does not exist" in failed.detail
    assert failed.fix is not None
    assert 'mode = "native"' in failed.fix


def test_invalid_index_fails_naming_it_with_a_reindex_fix_and_is_left_invalid(
    database_url: str, conn: psycopg.Connection[Any], invalid_index: str
) -> None:
    result = check(database_url)

    assert result.returncode == 1
    [failed] = failures(result.stdout)
    assert (failed.job, failed.subject) == ("maintain-parlant-indexes", invalid_index)
    assert failed.detail == "invalid index on parlant_event"
    assert failed.fix is not None
    assert f"REINDEX INDEX CONCURRENTLY {invalid_index}" in failed.fix
    assert not is_valid_index(conn, invalid_index)
    # It is unique and its build met duplicates: a rebuild alone would meet them again (23505). The fix
    # says how to find them, and the query it gives does.
    duplicates = failed.fix.split("find them (", 1)[1].split("), remove", 1)[0]
    assert conn.execute(duplicates).fetchall() == [("customer_message", 2)]


def test_a_function_that_runs_reindex_concurrently_fails_check_and_readiness_before_its_first_run(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    # The troubleshooting guide's function, as the real database has it.
    conn.execute("""
        CREATE OR REPLACE FUNCTION maintain_parlant_indexes() RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
          REINDEX INDEX CONCURRENTLY parlant_event_created_at_idx;
          ANALYZE parlant_session;
          RAISE NOTICE 'Parlant index maintenance completed';
        END $$""")

    result = check(database_url)

    assert result.returncode == 1
    [failed] = failures(result.stdout)
    assert (failed.job, failed.subject) == ("maintain-parlant-indexes", "maintain_parlant_indexes()")
    assert "REINDEX INDEX CONCURRENTLY, which PostgreSQL refuses inside a function" in failed.detail
    assert failed.fix is not None and 'mode = "native"' in failed.fix


def test_native_mode_fails_check_for_a_configured_index_that_does_not_exist(database_url: str) -> None:
    indexes = '["parlant_event_pkey", "parlant_event_gone_idx"]'
    result = check(database_url, MAINTAINER_JOBS__MAINTAIN_PARLANT_INDEXES__MODE="native",
                   MAINTAINER_JOBS__MAINTAIN_PARLANT_INDEXES__INDEXES=indexes)

    assert result.returncode == 1
    [failed] = failures(result.stdout)
    assert (failed.subject, failed.detail) == ("parlant_event_gone_idx", "configured for native mode, does not exist")
    assert failed.fix == "create it, or take it out of jobs.maintain_parlant_indexes.indexes"


def test_role_owning_nothing_fails_for_each_table_and_the_view_with_the_privilege_fix(
    conn: psycopg.Connection[Any], other_role_url: str
) -> None:
    role = role_of(other_role_url)

    result = check(other_role_url)

    assert result.returncode == 1
    failed = {(line.job, line.subject): line for line in failures(result.stdout)}
    # subject of the failing check -> the relation its fix must grant on
    grants = {
        ("update-statistics", "parlant_agent"): "parlant_agent",
        ("update-statistics", "parlant_session"): "parlant_session",
        ("update-statistics", "parlant_event"): "parlant_event",
        ("maintain-parlant-events", "parlant_event"): "parlant_event",
        ("refresh-agent-analytics", VIEW): VIEW,
        # the function runs with the caller's privileges, so the caller needs them on the tables
        ("maintain-parlant-indexes", "maintain_parlant_indexes()"): "parlant_agent",
    }
    assert failed.keys() == grants.keys()
    for key, line in failed.items():
        assert f"role {role} may not" in line.detail
        assert line.fix is not None
        assert grants[key] in line.fix
        if conn.info.server_version >= MAINTAIN_PRIVILEGE_SINCE:
            assert f"GRANT MAINTAIN ON {grants[key]}" in line.fix
        else:
            assert "owner" in line.fix
            assert "GRANT MAINTAIN" not in line.fix


def test_role_granted_pg_maintain_passes_where_it_failed_before(
    other_role_url: str, grant_pg_maintain: Callable[[], None]
) -> None:
    jobs_needing_maintain = (
        "update-statistics", "maintain-parlant-events", "refresh-agent-analytics", "maintain-parlant-indexes"
    )
    before = check(other_role_url)
    assert {line.job for line in failures(before.stdout)} == set(jobs_needing_maintain)

    grant_pg_maintain()
    result = check(other_role_url)

    assert result.returncode == 0, result.stdout
    for job in jobs_needing_maintain:
        lines = lines_of(result.stdout, job)
        assert lines
        assert all(line.status == "ok" for line in lines), lines


def test_role_owning_nothing_fails_for_the_index_function_it_cannot_run(other_role_url: str) -> None:
    ran = maintainer("run-once", "maintain-parlant-indexes", "--database-url", other_role_url)
    if [line.get("sqlstate") for line in json_lines(ran.stderr) if line["event"] == "job_failed"] != ["42501"]:
        pytest.fail(f"expected the run to be refused with 42501, so the check has something to catch: {ran.stderr}")

    result = check(other_role_url)

    assert [line.status for line in lines_of(result.stdout, "maintain-parlant-indexes")] == ["FAIL"]


def test_disabled_job_is_not_checked(database_url: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("DROP FUNCTION maintain_parlant_indexes()")

    result = check(database_url, MAINTAINER_JOBS__MAINTAIN_PARLANT_INDEXES__ENABLED="false")

    assert result.returncode == 0, result.stdout
    assert lines_of(result.stdout, "maintain-parlant-indexes") == []
    assert {line.job for line in report(result.stdout)} == {"server", *JOBS} - {"maintain-parlant-indexes"}


def unreachable_check() -> subprocess.CompletedProcess[str]:
    return check(f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", MAINTAINER_CONNECT_TIMEOUT="2s")


def test_unreachable_server_fails_the_connection_check_without_showing_the_password() -> None:
    result = unreachable_check()

    assert result.returncode == 1
    [failed] = [text for text in result.stdout.splitlines() if text.startswith("FAIL")]
    assert failed.split()[:3] == ["FAIL", "server", "connection:"]
    assert "cannot connect" in failed
    assert "127.0.0.1" in failed
    [fix] = [text.strip() for text in result.stdout.splitlines() if text.strip().startswith("fix: ")]
    assert "database URL" in fix
    assert PASSWORD not in result.stdout
    assert PASSWORD not in result.stderr


def test_unreachable_server_is_reported_on_one_line_and_its_fix() -> None:
    result = unreachable_check()

    assert len(result.stdout.splitlines()) == 2, result.stdout


def test_missing_configured_table_fails_naming_it(database_url: str) -> None:
    result = check(database_url, MAINTAINER_JOBS__UPDATE_STATISTICS__TABLES='["parlant_event","no_such_table"]')

    assert result.returncode == 1
    [failed] = failures(result.stdout)
    assert (failed.job, failed.subject, failed.detail) == ("update-statistics", "no_such_table", "does not exist")
    assert failed.fix is not None
    assert "jobs.update_statistics" in failed.fix
    assert [line.subject for line in lines_of(result.stdout, "update-statistics") if line.status == "ok"] == [
        "parlant_event"
    ]


def test_check_warns_when_replicas_cannot_claim_their_runs(database_url: str, other_role_url: str) -> None:
    owner = [line for line in report(check(database_url).stdout) if line.subject == "replica claims"]
    other = [line for line in report(check(other_role_url).stdout) if line.subject == "replica claims"]

    assert [(line.status, line.detail) for line in owner] == [
        ("ok", "one run per scheduled time across replicas: claims in maintainer.run_history_ticks, created at"
               " the daemon's first run")]
    [warning] = other
    assert warning.status == "warn"
    assert "may not create maintainer.run_history_ticks: two replicas may both run one scheduled run" in warning.detail
    assert warning.fix is not None and "GRANT CREATE ON SCHEMA maintainer" in warning.fix
