"""The four maintenance jobs on a real PostgreSQL: effects checked in the catalogs, failures named with their fix."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

import jobs
from maintainer.errors import JobFailed
from maintainer.runner import Run, run_job
from tests.support.logs import LogLines
from tests.support.parlant import add_session, days_ago
from tests.support.settings import load_settings

VIEW = "parlant_agent_analytics_daily"
MAINTAIN_PRIVILEGE_SINCE = 170000


def run(database_url: str, job: str, *, dry_run: bool = False, **job_settings: Any) -> Run:
    settings = load_settings(database_url=database_url, jobs={job.replace("-", "_"): job_settings})
    return run_job(settings, jobs.REGISTRY.jobs[job], dry_run=dry_run)


def scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def last_analyze(conn: psycopg.Connection[Any], table: str) -> Any:
    return scalar(conn, "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s", table)


def relfilenode(conn: psycopg.Connection[Any], index: str) -> int:
    return int(scalar(conn, "SELECT relfilenode FROM pg_class WHERE relname = %s", index))


def view_rows(conn: psycopg.Connection[Any]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM parlant_agent_analytics_daily"))


@pytest.fixture
def some_events(conn: psycopg.Connection[Any]) -> None:
    for _ in range(3):
        add_session(conn, "completed", days_ago(10), [days_ago(12), days_ago(11), days_ago(10)])


# update-statistics


def test_update_statistics_analyzes_every_configured_table(database_url: str, conn: psycopg.Connection[Any]) -> None:
    tables = ["parlant_agent", "parlant_session", "parlant_event"]
    assert [last_analyze(conn, table) for table in tables] == [None, None, None]

    result = run(database_url, "update-statistics").result.summary

    assert all(last_analyze(conn, table) is not None for table in tables)
    assert all(result["tables"][table]["last_analyze_before"] is None for table in tables)
    assert all(result["tables"][table]["last_analyze_after"] is not None for table in tables)


def test_update_statistics_dry_run_names_the_statement_and_analyzes_nothing(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    result = run(database_url, "update-statistics", dry_run=True).result

    assert result.summary["statements"] == ['ANALYZE "parlant_agent", "parlant_session", "parlant_event"']
    assert last_analyze(conn, "parlant_event") is None


# maintain-parlant-events


def test_vacuum_reclaims_the_dead_rows_a_cleanup_left(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    conn.execute("DELETE FROM parlant_event WHERE \"offset\" > 0")
    conn.execute("SELECT pg_stat_force_next_flush()")  # the delete's statistics reach shared memory now

    result = run(database_url, "maintain-parlant-events").result.summary["tables"]["parlant_event"]

    assert result["dead_tuples_before"] == 6
    assert result["dead_tuples_after"] == 0
    vacuumed = conn.execute(
        "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, n_dead_tup FROM pg_stat_user_tables"
        " WHERE relname = 'parlant_event'"
    ).fetchone()
    assert vacuumed == (True, True, 0)


def test_vacuum_dry_run_reports_dead_tuples_and_vacuums_nothing(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    result = run(database_url, "maintain-parlant-events", dry_run=True).result.summary

    assert result["statements"] == ['VACUUM (ANALYZE) "parlant_event"']
    assert "n_dead_tup" in result["tables"]["parlant_event"]
    assert scalar(conn, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'parlant_event'") is None


# refresh-agent-analytics


def test_refresh_is_concurrent_on_a_healthy_view(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    assert view_rows(conn) == 0

    result = run(database_url, "refresh-agent-analytics").result.summary

    assert result["mode"] == "concurrent"
    assert view_rows(conn) == 9  # three sessions, each with its own agent, each active on three days
    assert scalar(conn, "SELECT sum(events) FROM parlant_agent_analytics_daily") == 9


def test_a_never_populated_view_gets_its_first_plain_refresh(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    conn.execute(f"REFRESH MATERIALIZED VIEW {VIEW} WITH NO DATA")

    result = run(database_url, "refresh-agent-analytics").result

    assert result.summary["mode"] == "first_population"
    assert "never populated" in result.report
    assert scalar(conn, "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s", VIEW) is True


def test_a_view_without_unique_index_is_refused_with_the_index_that_fixes_it(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    conn.execute("DROP INDEX parlant_agent_analytics_daily_key")

    with pytest.raises(JobFailed) as failure:
        run(database_url, "refresh-agent-analytics")

    assert failure.value.sqlstate == "55000"
    assert "no unique index" in str(failure.value)
    assert f"CREATE UNIQUE INDEX CONCURRENTLY ON {VIEW} (agent_id, day)" in str(failure.value.fix)
    assert view_rows(conn) == 0


def test_blocking_refresh_when_allowed_warns_that_readers_were_blocked(
    database_url: str, conn: psycopg.Connection[Any], some_events: None, log: LogLines) -> None:
    conn.execute("DROP INDEX parlant_agent_analytics_daily_key")

    result = run(database_url, "refresh-agent-analytics", allow_blocking_refresh=True).result.summary

    assert result["mode"] == "blocking"
    assert view_rows(conn) == 9
    warnings = [line for line in log.all() if line["level"] == "warning"]
    assert [line["event"] for line in warnings] == ["refresh_blocked_readers"]


def test_refresh_dry_run_leaves_an_unpopulated_view_unpopulated(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute(f"REFRESH MATERIALIZED VIEW {VIEW} WITH NO DATA")

    result = run(database_url, "refresh-agent-analytics", dry_run=True).result.summary

    assert (result["populated"], result["mode"]) == (False, "first_population")
    assert result["statements"] == [f'REFRESH MATERIALIZED VIEW "{VIEW}"']
    assert scalar(conn, "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s", VIEW) is False


def test_a_missing_view_is_named(database_url: str) -> None:
    with pytest.raises(JobFailed) as failure:
        run(database_url, "refresh-agent-analytics", view="no_such_view")

    assert "no_such_view does not exist" in str(failure.value)


# maintain-parlant-indexes


def test_function_mode_calls_the_function(database_url: str, conn: psycopg.Connection[Any]) -> None:
    before = relfilenode(conn, "parlant_event_created_at_idx")

    run(database_url, "maintain-parlant-indexes")

    assert relfilenode(conn, "parlant_event_created_at_idx") != before  # the fixture function reindexes it


def test_a_function_running_reindex_concurrently_fails_naming_the_cause_and_native_mode(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("""
        CREATE OR REPLACE FUNCTION maintain_parlant_indexes() RETURNS void LANGUAGE plpgsql AS $$
        BEGIN REINDEX INDEX CONCURRENTLY parlant_event_created_at_idx; END $$
    """)

    with pytest.raises(JobFailed) as failure:
        run(database_url, "maintain-parlant-indexes")

    assert failure.value.sqlstate == "25001"
    assert "REINDEX CONCURRENTLY cannot be executed from a function" in str(failure.value)
    assert 'mode = "native"' in str(failure.value.fix)


def test_a_missing_function_fails_naming_it_and_native_mode(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("DROP FUNCTION maintain_parlant_indexes()")

    with pytest.raises(JobFailed) as failure:
        run(database_url, "maintain-parlant-indexes")

    assert failure.value.sqlstate == "42883"
    assert "maintain_parlant_indexes() does not exist" in str(failure.value)
    assert 'mode = "native"' in str(failure.value.fix)


def _make_invalid_index(conn: psycopg.Connection[Any], name: str) -> None:
    """A unique index whose concurrent build failed on duplicates: PostgreSQL leaves it behind, invalid."""
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON parlant_event (event_type)")


def is_valid(conn: psycopg.Connection[Any], index: str) -> bool:
    return bool(scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", index))


def test_native_mode_reindexes_configured_indexes_and_rebuilds_invalid_ones(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    _make_invalid_index(conn, "parlant_event_type_uniq")
    conn.execute("DELETE FROM parlant_event")  # without duplicates the rebuild can succeed
    before = relfilenode(conn, "parlant_event_session_offset_idx")

    result = run(database_url, "maintain-parlant-indexes", mode="native").result.summary

    assert relfilenode(conn, "parlant_event_session_offset_idx") != before
    assert is_valid(conn, "parlant_event_type_uniq")
    assert result["invalid_rebuilt"] == ["parlant_event_type_uniq"]
    assert last_analyze(conn, "parlant_session") is not None


def test_a_failed_native_rebuild_drops_the_invalid_copy_it_made(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    _make_invalid_index(conn, "parlant_event_type_uniq")  # the duplicates are still there

    with pytest.raises(JobFailed) as failure:
        run(database_url, "maintain-parlant-indexes", mode="native")

    assert failure.value.sqlstate == "23505"
    indexes = {row[0] for row in conn.execute("SELECT indexrelid::regclass::text FROM pg_index")}
    assert "parlant_event_type_uniq" in indexes
    assert "parlant_event_type_uniq_ccnew" not in indexes
    # The fix can work: find the repeated keys first (the query it names lists them), then rebuild.
    assert failure.value.fix is not None
    assert "SELECT event_type, count(*) FROM parlant_event GROUP BY event_type HAVING count(*) > 1" in failure.value.fix


def test_native_mode_names_configured_indexes_that_do_not_exist_and_reindexes_the_others(
    database_url: str, conn: psycopg.Connection[Any], log: LogLines) -> None:
    before = relfilenode(conn, "parlant_event_pkey")

    done = run(database_url, "maintain-parlant-indexes", mode="native",
               indexes=["parlant_event_pkey", "parlant_event_gone_idx"])

    assert relfilenode(conn, "parlant_event_pkey") != before
    assert done.result.summary["missing_indexes"] == ["parlant_event_gone_idx"]
    assert "not found, not reindexed: parlant_event_gone_idx" in done.result.report
    [warning] = [line for line in log.all()
                 if line["event"] == "indexes_not_found"]
    assert (warning["level"], warning["indexes"]) == ("warning", ["parlant_event_gone_idx"])


def test_native_mode_leaves_a_failed_reindex_copy_for_the_operator_to_drop(
    database_url: str, conn: psycopg.Connection[Any], some_events: None
) -> None:
    _make_invalid_index(conn, "parlant_event_type_uniq_ccnew")

    result = run(database_url, "maintain-parlant-indexes", mode="native").result

    assert result.summary["invalid_left"] == ["parlant_event_type_uniq_ccnew"]
    assert "DROP INDEX CONCURRENTLY parlant_event_type_uniq_ccnew" in result.report
    assert not is_valid(conn, "parlant_event_type_uniq_ccnew")


def test_native_dry_run_lists_the_statements_and_rebuilds_nothing(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    before = relfilenode(conn, "parlant_event_pkey")

    result = run(database_url, "maintain-parlant-indexes", mode="native", dry_run=True).result.summary

    assert 'REINDEX INDEX CONCURRENTLY "parlant_event_pkey"' in result["statements"]
    assert result["statements"][-1] == 'ANALYZE "parlant_agent", "parlant_session", "parlant_event"'
    assert relfilenode(conn, "parlant_event_pkey") == before


# privileges and locks


@pytest.mark.parametrize(
    ("job", "settings", "command"),
    [
        ("update-statistics", {}, "ANALYZE"),
        ("maintain-parlant-events", {}, "VACUUM"),
        ("refresh-agent-analytics", {}, "REFRESH"),
        ("maintain-parlant-indexes", {"mode": "native"}, "REINDEX"),
    ],
)
def test_a_role_that_may_not_maintain_gets_an_error_naming_table_and_privilege(
    other_role_url: str, conn: psycopg.Connection[Any], job: str, settings: dict[str, Any], command: str
) -> None:
    with pytest.raises(JobFailed) as failure:
        run(other_role_url, job, **settings)

    assert failure.value.sqlstate == "42501"
    assert f"may not {command}" in str(failure.value)
    assert "parlant_" in str(failure.value)
    if conn.info.server_version >= MAINTAIN_PRIVILEGE_SINCE:
        assert "GRANT MAINTAIN ON" in str(failure.value.fix)
    else:
        assert "owner" in str(failure.value.fix)


def test_with_the_maintain_privilege_a_non_owner_may_vacuum_and_analyze(
    other_role_url: str, conn: psycopg.Connection[Any]
) -> None:
    if conn.info.server_version < MAINTAIN_PRIVILEGE_SINCE:
        pytest.skip("the MAINTAIN privilege exists from PostgreSQL 17")
    role = psycopg.conninfo.conninfo_to_dict(other_role_url)["user"]
    conn.execute(f"GRANT MAINTAIN ON parlant_agent, parlant_session, parlant_event TO {role}")

    run(other_role_url, "update-statistics")
    run(other_role_url, "maintain-parlant-events")

    assert last_analyze(conn, "parlant_agent") is not None
    assert scalar(conn, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'parlant_event'") is not None


def _lock(relation: str) -> str:
    return f"LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE"


@pytest.mark.parametrize(
    ("job", "settings", "application_statement"),
    [
        ("update-statistics", {}, _lock("parlant_session")),
        ("maintain-parlant-events", {}, _lock("parlant_event")),
        # a materialized view cannot be LOCKed; a refresh in an open transaction holds it exclusively
        ("refresh-agent-analytics", {}, f"REFRESH MATERIALIZED VIEW {VIEW}"),
        ("maintain-parlant-indexes", {"mode": "native"}, _lock("parlant_event")),
        ("maintain-parlant-indexes", {}, _lock("parlant_event")),
    ],
)
def test_a_lock_held_by_the_application_is_reported_as_a_lock_timeout(
    database_url: str, job: str, settings: dict[str, Any], application_statement: str
) -> None:
    with psycopg.connect(database_url) as application:
        application.execute(application_statement)

        with pytest.raises(JobFailed) as failure:
            run(database_url, job, lock_timeout="200ms", **settings)

    assert failure.value.sqlstate == "55P03"
    assert "lock timeout" in str(failure.value)
