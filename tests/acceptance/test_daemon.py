"""``maintainer run`` as an operator runs it: daemons as subprocesses, their JSON log lines on stdout,
the run history table, and what the server shows in ``pg_stat_activity`` and ``pg_locks``.

Every schedule here is a matter of seconds, and every wait is a condition polled with a deadline.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from maintainer.locking import lock_key
from tests.support.commands import Daemon, maintainer, url_with_password, write_config
from tests.support.logs import json_lines, named
from tests.support.parlant import add_session, days_before_now
from tests.support.waiting import wait_for

PASSWORD = "s3cret-daemon-pw"
HISTORY = "maintainer.run_history"
















def history(conn: psycopg.Connection[Any], job: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(f"SELECT * FROM {HISTORY} WHERE job = %s ORDER BY started_at", (job,))  # noqa: S608
        return cursor.fetchall()


def history_count(conn: psycopg.Connection[Any], job: str) -> int:
    if conn.execute("SELECT to_regclass(%s)", (HISTORY,)).fetchone() == (None,):
        return 0
    return len(history(conn, job))


def advisory_locks(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT pid, classid, objid FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchall()












def test_two_replicas_never_run_a_job_at_the_same_time_and_both_stop_cleanly(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any], start_daemon: Callable[..., Daemon]
) -> None:
    job = "replicated-sleep"
    config = write_config(tmp_path / "maintainer.toml",
                          custom_jobs={job: {"schedule": "1 seconds", "sql": "SELECT pg_sleep(0.7)"}})
    url = url_with_password(database_url, PASSWORD)
    replicas = [start_daemon(config, url), start_daemon(config, url)]

    wait_for(lambda: history_count(conn, job) >= 8, 40, "8 finished runs in the history table")
    for replica in replicas:
        replica.terminate()
    exit_codes = [replica.exit_code(5) for replica in replicas]

    assert exit_codes == [0, 0]
    runs = history(conn, job)
    assert {run["status"] for run in runs} <= {"succeeded", "cancelled"}
    overlapping = [(earlier["run_id"], later["run_id"]) for earlier, later in itertools.pairwise(runs)
                   if later["started_at"] < earlier["ended_at"]]
    assert overlapping == [], "history rows of the job overlap in time"
    logs = [replica.lines() for replica in replicas]
    every_line = [line for lines in logs for line in lines]
    logged_successes = [line["run_id"] for line in named(every_line, "job_succeeded", job=job)]
    recorded_successes = [str(run["run_id"]) for run in runs if run["status"] == "succeeded"]
    assert sorted(logged_successes) == sorted(recorded_successes)
    terminal = {"job_succeeded", "job_failed", "job_cancelled", "job_skipped"}
    for started in named(every_line, "job_started", job=job):
        assert len([line for line in every_line if line["event"] in terminal
                    and line.get("run_id") == started["run_id"]]) == 1, started
    assert named(every_line, "job_skipped", job=job, reason="lock_held"), "no replica ever found the lock held"
    for replica, lines in zip(replicas, logs, strict=True):
        [started_line] = named(lines, "scheduler_started")
        assert "***" in started_line["config"]["database_url"]
        assert PASSWORD not in replica.log_path.read_text() + replica.stderr_path.read_text()
        assert named(lines, "scheduler_stopped")
        assert named(lines, "heartbeat")
    for index, lines in enumerate(logs):
        print(f"replica {index}: {len(named(lines, 'job_succeeded', job=job))} runs succeeded,"
              f" {len(named(lines, 'job_skipped', job=job))} skipped, {len(named(lines, 'job_cancelled', job=job))}"
              " cancelled")


def test_sigterm_cancels_a_long_query_after_the_grace_and_exits_0(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any], start_daemon: Callable[..., Daemon]
) -> None:
    job = "long-sleep"
    config = write_config(tmp_path / "maintainer.toml", scheduler={"shutdown_grace": "1s"},
                          custom_jobs={job: {"schedule": "1 seconds", "sql": "SELECT pg_sleep(60)"}})
    daemon = start_daemon(config, database_url)

    def sleeping_backends() -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
            " AND state = 'active' AND query LIKE '%%pg_sleep%%'", (f"maintainer:{job}",)
        ).fetchall()

    wait_for(sleeping_backends, 20, f"the {job} query running on the server")
    daemon.terminate()
    exit_code = daemon.exit_code(10)

    assert exit_code == 0
    assert [run["status"] for run in history(conn, job)] == ["cancelled"]
    wait_for(lambda: not advisory_locks(conn), 3, "the job's advisory lock to go")
    wait_for(lambda: not sleeping_backends(), 3, "the cancelled query to leave pg_stat_activity")
    events = [line["event"] for line in daemon.lines()]
    order = ["scheduler_stopping", "job_cancelling", "job_cancelled", "scheduler_stopped"]
    assert all(event in events for event in order), events
    assert [events.index(event) for event in order] == sorted(events.index(event) for event in order), events


def test_sigterm_stops_the_retention_cleanup_between_batches_and_the_next_run_finishes_it(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any], start_daemon: Callable[..., Daemon]
) -> None:
    for _ in range(300):
        add_session(conn, "completed", days_before_now(200), [days_before_now(300)] * 3)
    eligible = 900
    config = write_config(tmp_path / "maintainer.toml", scheduler={"shutdown_grace": "20s"}, jobs_settings={
        "cleanup_old_events": {"enabled": True, "schedule": "1 seconds", "batch_size": 2,
                               "pause_between_batches": "0.2s", "progress_every_batches": 1},
    })
    daemon = start_daemon(config, database_url)

    daemon.wait_for_lines("cleanup_progress")
    signalled = time.monotonic()
    daemon.terminate()
    exit_code = daemon.exit_code(20)

    assert exit_code == 0
    assert time.monotonic() - signalled < 5
    [run] = history(conn, "cleanup-old-events")
    assert run["status"] == "cancelled"
    [cancelled] = named(daemon.lines(), "job_cancelled", job="cleanup-old-events")
    assert cancelled["stop_reason"] == "shutdown"
    remaining = conn.execute("SELECT count(*) FROM parlant_event").fetchone()
    assert remaining is not None
    assert 0 < remaining[0] < eligible
    assert run["rows_affected"] == cancelled["rows_deleted"] == eligible - remaining[0]

    finish = maintainer("run-once", "cleanup-old-events", MAINTAINER_DATABASE_URL=database_url)

    assert finish.returncode == 0, finish.stderr
    assert conn.execute("SELECT count(*) FROM parlant_event").fetchone() == (0,)


def test_unreachable_database_is_failed_and_retried_runs_not_a_crash(
    tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    job = "select-one"
    config = write_config(tmp_path / "maintainer.toml", retry={"max_attempts": 2},
                          custom_jobs={job: {"schedule": "1 seconds", "sql": "SELECT 1"}})
    daemon = start_daemon(config, "postgresql://u@127.0.0.1:1/db", MAINTAINER_CONNECT_TIMEOUT="1s")

    failures = daemon.wait_for_lines("job_failed", count=2, job=job)

    assert daemon.process.poll() is None
    for failure in failures:
        assert (failure["level"], failure["error_type"], failure["attempts"]) == ("error", "OperationalError", 2)
    lines = daemon.lines()
    retries = named(lines, "job_retrying", job=job, attempt=1)
    assert len(retries) >= 2
    assert all(retry["error_type"] == "OperationalError" for retry in retries)
    unavailable = named(lines, "history_unavailable")
    assert unavailable
    assert all(line["level"] == "warning" for line in unavailable)
    daemon.terminate()
    assert daemon.exit_code(10) == 0


def test_invalid_schedule_stops_startup_with_exit_2_naming_the_setting(tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path / "maintainer.toml",
                          custom_jobs={"every-hour": {"schedule": "61 * * * *", "sql": "SELECT 1"}})

    result = maintainer("run", MAINTAINER_DATABASE_URL=database_url, MAINTAINER_CONFIG=str(config))

    assert result.returncode == 2
    assert "custom_jobs.every-hour.schedule" in result.stderr
    assert "61 * * * *" in result.stderr
    assert "scheduler_started" not in result.stdout


def test_missing_database_url_stops_startup_with_exit_2_naming_the_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "maintainer.toml",
                          custom_jobs={"select-one": {"schedule": "1 seconds", "sql": "SELECT 1"}})

    result = maintainer("run", MAINTAINER_CONFIG=str(config))

    assert result.returncode == 2
    # The settings were read: the failure is a JSON line of the daemon's log, like every other.
    [failed] = named(json_lines(result.stdout), "command_failed")
    assert (failed["level"], failed["command"], failed["exit_code"]) == ("error", "run", 2)
    assert "MAINTAINER_DATABASE_URL" in failed["error"]
    assert "scheduler_started" not in result.stdout
    assert result.stderr == ""


def test_job_that_keeps_failing_is_reported_overdue_and_a_healthy_one_is_not(
    tmp_path: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(
        tmp_path / "maintainer.toml", scheduler={"overdue_grace": "1s", "overdue_check_interval": "1s"},
        custom_jobs={
            "always-failing": {"schedule": "2 seconds", "sql": "SELECT * FROM no_such_table"},
            "healthy": {"schedule": "1 seconds", "sql": "SELECT 1"},
        },
    )
    daemon = start_daemon(config, database_url)

    overdue = daemon.wait_for_lines("job_overdue", count=2, job="always-failing")

    assert all(line["level"] == "error" for line in overdue)
    assert overdue[0]["expected_interval_s"] == 2
    assert overdue[0]["last_success_at"] is None
    lines = daemon.lines()
    assert {line["sqlstate"] for line in named(lines, "job_failed", job="always-failing")} == {"42P01"}
    assert len(named(lines, "job_succeeded", job="healthy")) >= 2
    assert named(lines, "job_overdue", job="healthy") == []


def test_overdue_line_gives_the_last_success_as_an_iso_timestamp(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any], start_daemon: Callable[..., Daemon]
) -> None:
    job = "succeeds-once"  # the second run finds the table there and fails with 42P07
    config = write_config(
        tmp_path / "maintainer.toml", scheduler={"overdue_grace": "1s", "overdue_check_interval": "1s"},
        custom_jobs={job: {"schedule": "2 seconds", "sql": "CREATE TABLE succeeds_once_marker ()"}},
    )
    daemon = start_daemon(config, database_url)

    [overdue, *_] = daemon.wait_for_lines("job_overdue", job=job)

    [success] = [run for run in history(conn, job) if run["status"] == "succeeded"]
    last_success_at = datetime.fromisoformat(overdue["last_success_at"])
    assert abs(last_success_at - success["ended_at"]) < timedelta(seconds=1)


CREATE_INDEX = "CREATE INDEX CONCURRENTLY IF NOT EXISTS parlant_event_type_idx ON parlant_event (event_type)"


def index_validity(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('parlant_event_type_idx')"
    ).fetchall()


def test_custom_sql_with_autocommit_creates_an_index_concurrently(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    config = write_config(tmp_path / "maintainer.toml",
                          custom_jobs={"event-type-index": {"schedule": "@daily", "sql": CREATE_INDEX,
                                                            "autocommit": True}})

    result = maintainer("run-once", "event-type-index", MAINTAINER_DATABASE_URL=database_url,
                        MAINTAINER_CONFIG=str(config))

    assert result.returncode == 0, result.stderr
    assert named(json_lines(result.stderr), "job_succeeded", job="event-type-index")
    assert index_validity(conn) == [(True,)]


def test_custom_sql_that_needs_autocommit_fails_in_a_transaction_with_sqlstate_25001(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any]
) -> None:
    config = write_config(tmp_path / "maintainer.toml",
                          custom_jobs={"event-type-index": {"schedule": "@daily", "sql": CREATE_INDEX,
                                                            "autocommit": False}})

    result = maintainer("run-once", "event-type-index", MAINTAINER_DATABASE_URL=database_url,
                        MAINTAINER_CONFIG=str(config))

    assert result.returncode == 1
    [failed] = named(json_lines(result.stderr), "job_failed", job="event-type-index")
    assert failed["sqlstate"] == "25001"
    assert index_validity(conn) == []


def test_run_once_exits_75_while_another_run_holds_the_lock_and_0_after_it_is_released(
    database_url: str, conn: psycopg.Connection[Any]
) -> None:
    key = lock_key("cleanup-old-events")
    conn.execute("SELECT pg_advisory_lock(%s, %s)", key)

    locked = maintainer("run-once", "cleanup-old-events", MAINTAINER_DATABASE_URL=database_url)

    assert locked.returncode == 75, locked.stderr
    assert named(json_lines(locked.stderr), "job_skipped", job="cleanup-old-events", reason="lock_held")
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)

    unlocked = maintainer("run-once", "cleanup-old-events", MAINTAINER_DATABASE_URL=database_url)

    assert unlocked.returncode == 0, unlocked.stderr


def job_status(job: str, **env: str) -> dict[str, Any]:
    result = maintainer("status", "--format", "json", **env)
    assert result.returncode == 0, result.stderr
    [row] = [row for row in json.loads(result.stdout)["jobs"] if row["job"] == job]
    return {key: datetime.fromisoformat(value) if key.endswith("_at") and value else value
            for key, value in row.items()}


def test_status_reports_last_run_success_error_and_next_run_of_a_custom_job(
    tmp_path: Path, database_url: str
) -> None:
    job = "nightly-select"
    env = {"MAINTAINER_DATABASE_URL": database_url, "MAINTAINER_CONFIG": str(tmp_path / "maintainer.toml")}
    write_config(tmp_path / "maintainer.toml",
                 custom_jobs={job: {"schedule": "0 2 * * *", "sql": "SELECT 1"}})
    before = datetime.now(UTC)
    assert maintainer("run-once", job, **env).returncode == 0
    after = datetime.now(UTC)

    succeeded = job_status(job, **env)

    assert succeeded["last_status"] == "succeeded"
    assert before <= succeeded["last_run_at"] <= succeeded["last_success_at"] <= after
    assert succeeded["last_error"] is None
    assert (succeeded["next_run_at"].hour, succeeded["next_run_at"].minute) == (2, 0)
    assert after < succeeded["next_run_at"] <= datetime.now(UTC) + timedelta(days=1)

    write_config(tmp_path / "maintainer.toml",
                 custom_jobs={job: {"schedule": "0 2 * * *", "sql": "SELECT * FROM no_such_table"}})
    assert maintainer("run-once", job, **env).returncode == 1

    failed = job_status(job, **env)

    assert failed["last_status"] == "failed"
    assert "no_such_table" in failed["last_error"]
    assert failed["last_run_at"] > succeeded["last_run_at"]
    assert failed["last_success_at"] == succeeded["last_success_at"]


@pytest.mark.parametrize("history", ["never created", "off"])
def test_status_answers_on_day_one_with_what_it_knows(database_url: str, history: str) -> None:
    env = {"MAINTAINER_DATABASE_URL": database_url}
    if history == "off":
        env["MAINTAINER_HISTORY__ENABLED"] = "false"

    text = maintainer("status", **env)
    parsed = maintainer("status", "--format", "json", **env)

    assert (text.returncode, parsed.returncode) == (0, 0), text.stderr + parsed.stderr
    assert text.stdout.splitlines()[0] == ("run history: off (history.enabled = false): no runs are recorded"
                                           if history == "off" else
                                           f"run history: empty: no run recorded yet ({HISTORY} does not exist)")
    assert "cleanup-old-events        last run never (-), last success never, next 20" in text.stdout
    assert "LINE" not in text.stdout + text.stderr and "^" not in text.stdout + text.stderr
    status = json.loads(parsed.stdout)
    assert {row["job"] for row in status["jobs"]} >= {"cleanup-old-events", "maintain-parlant-indexes"}
    assert all(row["last_run_at"] is None for row in status["jobs"])


def test_status_of_an_unreachable_database_exits_1_saying_so_in_one_line() -> None:
    result = maintainer("status", MAINTAINER_DATABASE_URL="postgresql://nobody:pw@127.0.0.1:1/nothing",
                        MAINTAINER_CONNECT_TIMEOUT="1s")

    assert result.returncode == 1
    [failed] = json_lines(result.stderr)  # one line, JSON like every other (stderr is not a terminal)
    assert (failed["event"], failed["command"], failed["exit_code"]) == ("command_failed", "status", 1)
    assert failed["error"].startswith(f"cannot read the run history ({HISTORY}):")
    assert "pw" not in result.stderr


def test_with_history_off_replicas_still_run_each_scheduled_run_once(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any], start_daemon: Callable[..., Daemon]
) -> None:
    job = "quick-select"
    config = write_config(tmp_path / "maintainer.toml", custom_jobs={job: {"schedule": "1 seconds", "sql": "SELECT 1"}})
    replicas = [start_daemon(config, database_url, MAINTAINER_HISTORY__ENABLED="false") for _ in range(2)]

    for replica in replicas:
        replica.wait_for_lines("job_succeeded", count=5, job=job)
        replica.terminate()
    assert [replica.exit_code(10) for replica in replicas] == [0, 0]

    lines = [line for replica in replicas for line in replica.lines()]
    ran = [line["scheduled_for"] for line in named(lines, "job_succeeded", job=job)]
    assert len(ran) == len(set(ran)) >= 10, "a scheduled run ran twice"
    assert named(lines, "job_skipped", job=job, reason="already_ran") or named(lines, "job_skipped", job=job)
    assert conn.execute(f"SELECT to_regclass('{HISTORY}')").fetchone() == (None,)
    assert conn.execute(f"SELECT to_regclass('{HISTORY}_ticks')").fetchone() != (None,)
