"""The CLI as an operator runs it: a subprocess, its exit code, its report on stdout, its JSON log lines on stderr.

The CLI reads the real clock, so rows sit far from the 90-day cutoff relative to now.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support.commands import maintainer
from tests.support.logs import json_lines
from tests.support.parlant import add_session, days_before_now, event_ids

PASSWORD = "s3cret-pw"








@pytest.fixture
def old_and_recent_events(conn: psycopg.Connection[Any]) -> dict[str, set[Any]]:
    """Three events the default policy deletes and three it keeps, none within weeks of the cutoff."""
    _, doomed = add_session(conn, "completed", days_before_now(200), [days_before_now(300), days_before_now(250)])
    _, doomed_too = add_session(conn, "completed", days_before_now(150), [days_before_now(160)])
    _, recent_end = add_session(conn, "completed", days_before_now(10), [days_before_now(200)])
    _, active = add_session(conn, "active", None, [days_before_now(150), days_before_now(1)])
    return {"deleted": {*doomed, *doomed_too}, "kept": {*recent_end, *active}}


def test_dry_run_prints_the_audit_as_json_and_changes_nothing(
    database_url: str, conn: psycopg.Connection[Any], old_and_recent_events: dict[str, set[Any]]
) -> None:
    before = event_ids(conn)

    result = maintainer(
        "run-once", "cleanup-old-events", "--dry-run", "--format", "json", MAINTAINER_DATABASE_URL=database_url
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is True
    assert report["would_delete"]["events"] == 3
    assert report["would_delete"]["sessions"] == 2
    assert report["kept_older_than_cutoff"]["completed_recent"]["events"] == 1
    assert report["kept_older_than_cutoff"]["active"]["events"] == 1
    assert event_ids(conn) == before


def test_dry_run_logs_one_json_object_per_line_with_run_context(
    database_url: str, old_and_recent_events: dict[str, set[Any]]
) -> None:
    result = maintainer(
        "run-once", "cleanup-old-events", "--dry-run", "--format", "json", MAINTAINER_DATABASE_URL=database_url
    )

    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["event"] for line in lines] == ["job_started", "job_succeeded"]
    for line in lines:
        assert {"timestamp", "level", "event", "job", "run_id", "dry_run"} <= line.keys()
        assert line["timestamp"].endswith("Z")
        assert line["level"] == "info"
        assert line["job"] == "cleanup-old-events"
        assert line["run_id"] == json.loads(result.stdout)["run_id"]
        assert line["dry_run"] is True


def test_run_once_deletes_old_events_and_reports_how_many(
    database_url: str, conn: psycopg.Connection[Any], old_and_recent_events: dict[str, set[Any]]
) -> None:
    result = maintainer("run-once", "cleanup-old-events", MAINTAINER_DATABASE_URL=database_url)

    assert result.returncode == 0, result.stderr
    assert "deleted 3 events" in result.stdout
    assert event_ids(conn) == old_and_recent_events["kept"]


def test_database_url_flag_is_enough_without_any_environment(
    database_url: str, conn: psycopg.Connection[Any], old_and_recent_events: dict[str, set[Any]]
) -> None:
    result = maintainer("run-once", "cleanup-old-events", "--database-url", database_url)

    assert result.returncode == 0, result.stderr
    assert event_ids(conn) == old_and_recent_events["kept"]


def test_unknown_job_exits_2_listing_the_valid_jobs(database_url: str) -> None:
    result = maintainer("run-once", "cleanup-old-event", MAINTAINER_DATABASE_URL=database_url)

    assert result.returncode == 2
    assert "cleanup-old-events" in result.stderr


def test_invalid_retention_exits_2_naming_the_field_and_deletes_nothing(
    database_url: str, conn: psycopg.Connection[Any], old_and_recent_events: dict[str, set[Any]]
) -> None:
    before = event_ids(conn)

    result = maintainer(
        "run-once", "cleanup-old-events",
        MAINTAINER_DATABASE_URL=database_url, MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS="0",
    )

    assert result.returncode == 2
    assert "jobs.cleanup_old_events.retention_days" in result.stderr
    assert event_ids(conn) == before


def test_no_database_configured_exits_2_naming_the_variable() -> None:
    result = maintainer("run-once", "cleanup-old-events")

    assert result.returncode == 2
    assert "MAINTAINER_DATABASE_URL" in result.stderr
    assert "job_started" not in result.stderr


def test_unreachable_database_exits_1_logging_job_failed_without_the_password() -> None:
    result = maintainer(
        "run-once", "cleanup-old-events",
        MAINTAINER_DATABASE_URL=f"postgresql://u:{PASSWORD}@127.0.0.1:1/db", MAINTAINER_CONNECT_TIMEOUT="2s",
    )

    assert result.returncode == 1
    failed = [line for line in json_lines(result.stderr) if line["event"] == "job_failed"]
    assert len(failed) == 1
    assert failed[0]["error_type"] == "OperationalError"
    assert failed[0]["level"] == "error"
    assert PASSWORD not in result.stdout
    assert PASSWORD not in result.stderr


def test_sql_error_is_logged_with_its_sqlstate(database_url: str) -> None:
    result = maintainer(
        "run-once", "cleanup-old-events",
        MAINTAINER_DATABASE_URL=database_url, MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__EVENT_TABLE="no_such_table",
    )

    assert result.returncode == 1
    failed = [line for line in json_lines(result.stderr) if line["event"] == "job_failed"]
    assert [line["sqlstate"] for line in failed] == ["42P01"]
    assert "no_such_table" in failed[0]["error"]


def test_list_shows_each_job_with_its_schedule() -> None:
    result = maintainer("list")

    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("cleanup-old-events")]
    assert "0 2 * * *" in row


def test_list_as_json_reflects_configured_schedule_and_state() -> None:
    result = maintainer(
        "list", "--format", "json",
        MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__SCHEDULE="30 3 * * 0",
        MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__ENABLED="false",
    )

    assert result.returncode == 0, result.stderr
    jobs = {job["job"]: job for job in json.loads(result.stdout)}
    assert (jobs["cleanup-old-events"]["schedule"], jobs["cleanup-old-events"]["enabled"]) == ("30 3 * * 0", False)
    assert jobs["update-statistics"]["schedule"] == "0 3 * * 0"


def test_help_exits_0_and_names_the_commands() -> None:
    result = maintainer("--help")

    assert result.returncode == 0
    assert all(command in result.stdout for command in ("run-once", "list"))


@pytest.mark.parametrize("position", ["before", "after"])
def test_global_options_work_before_or_after_the_command(
    database_url: str, tmp_path: Any, old_and_recent_events: dict[str, set[Any]], position: str
) -> None:
    config = tmp_path / "longer.toml"
    config.write_text("[jobs.cleanup_old_events]\nretention_days = 180\n")
    options = ["--database-url", database_url, "--config", str(config)]
    command = ["run-once", "cleanup-old-events", "--dry-run", "--format", "json"]

    result = maintainer(*(options + command if position == "before" else command + options))

    assert result.returncode == 0, result.stderr
    audit = json.loads(result.stdout)
    assert audit["retention_days"] == 180  # from --config
    assert audit["would_delete"]["events"] == 2  # only the events of the session that ended 200 days ago


def test_a_config_file_that_does_not_exist_is_refused_naming_the_flag(tmp_path: Any) -> None:
    result = maintainer("list", "--config", str(tmp_path / "missing.toml"))

    assert result.returncode == 2
    assert result.stderr.strip() == f"maintainer: --config={tmp_path / 'missing.toml'}: no such file"


def test_no_color_turns_the_console_logs_colors_off(database_url: str) -> None:
    colored = maintainer("run-once", "update-statistics", "--dry-run", MAINTAINER_DATABASE_URL=database_url,
                         MAINTAINER_LOG_FORMAT="console")
    plain = maintainer("run-once", "update-statistics", "--dry-run", MAINTAINER_DATABASE_URL=database_url,
                       MAINTAINER_LOG_FORMAT="console", NO_COLOR="1")

    assert "\x1b[" in colored.stderr
    assert "\x1b[" not in plain.stderr and "job_started" in plain.stderr


def test_run_once_of_a_disabled_job_says_so_and_runs_it(database_url: str) -> None:
    result = maintainer("run-once", "update-statistics", MAINTAINER_DATABASE_URL=database_url,
                        MAINTAINER_JOBS__UPDATE_STATISTICS__ENABLED="false", MAINTAINER_LOG_FORMAT="json")

    assert result.returncode == 0, result.stderr
    events = [line["event"] for line in json_lines(result.stderr)]
    assert events[:2] == ["disabled_job_run", "job_started"] and "job_succeeded" in events
    [notice] = [line for line in json_lines(result.stderr) if line["event"] == "disabled_job_run"]
    assert (notice["level"], notice["job"]) == ("warning", "update-statistics")
