"""Moving off a real pg_cron: Debian's postgresql-15-cron (pg_cron 1.4) on a PostgreSQL 15 cluster these tests
start, with the troubleshooting guide's jobs scheduled exactly as the guide writes them, and jobs of every
other kind beside them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from maintainer.fixture import create_schema
from tests.support.checks import Line, failures, report
from tests.support.commands import Daemon, daemons, maintainer, write_config
from tests.support.http import free_port, sample, scrape
from tests.support.paths import ROOT
from tests.support.tools import require_tool
from tests.support.waiting import wait_for

PG15 = Path("/usr/lib/postgresql/15/bin")

# automated-maintenance.sql of the troubleshooting guide, as written there, and the index migration's call.
GUIDE = """
SELECT cron.schedule(
  'cleanup-old-events',
  '0 2 * * *',  -- 2 AM daily
  $$
    DELETE FROM parlant_event
    WHERE created_at < NOW() - INTERVAL '90 days'
      AND session_id IN (
        SELECT id FROM parlant_session
        WHERE status = 'completed'
        AND ended_at < NOW() - INTERVAL '90 days'
      );
  $$
);
SELECT cron.schedule(
  'update-statistics',
  '0 3 * * 0',  -- 3 AM Sunday
  'ANALYZE parlant_agent, parlant_session, parlant_event;'
);
SELECT cron.schedule(
  'refresh-agent-analytics',
  '0 4 1 * *',  -- 4 AM first of month
  'REFRESH MATERIALIZED VIEW CONCURRENTLY parlant_agent_analytics_daily;'
);
SELECT cron.schedule('maintain-parlant-events', '0 */6 * * *', 'VACUUM ANALYZE parlant_event;');
SELECT cron.schedule('maintain-parlant-indexes', '30 5 * * 0', 'SELECT maintain_parlant_indexes();');
"""
# Everything else pg_cron runs on real databases, one of each kind.
CUSTOM = """
SELECT cron.schedule('Nightly Vacuum: sessions!', '15 1 * * *', 'VACUUM (ANALYZE) parlant_session');
SELECT cron.schedule('30 4 * * *', $$DELETE FROM parlant_agent WHERE name = 'gone'$$);
SELECT cron.schedule('paused-report', '0 6 * * 1', 'SELECT count(*) FROM parlant_event');
UPDATE cron.job SET active = false WHERE jobname = 'paused-report';
SELECT cron.schedule_in_database('elsewhere', '0 1 * * *', 'VACUUM', 'otherdb');
SELECT cron.schedule_in_database('as-someone', '0 1 * * *', 'SELECT 1', 'postgres', 'someone');
SELECT cron.schedule('both-days', '0 0 1 * 1', 'SELECT 1');
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, return_message,
                                  start_time, end_time)
SELECT jobid, 1, 1, database, username, command, 'failed', 'ERROR: lock timeout',
       now() - interval '1 day', now() - interval '1 day' FROM cron.job WHERE jobname = 'cleanup-old-events';
"""


class CronCluster:
    def __init__(self, data: Path, socket_dir: Path) -> None:
        self.data, self.socket_dir = data, socket_dir

    @property
    def url(self) -> str:
        return make_conninfo(host=str(self.socket_dir), user="postgres", dbname="postgres")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)


def _as_postgres() -> list[str]:
    """initdb and the server refuse to run as root: as root, become the postgres user."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root: setpriv (util-linux) is needed to run PostgreSQL as postgres"
    return [setpriv, "--reuid=postgres", "--regid=postgres", "--clear-groups"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[CronCluster]:
    require_tool(str(PG15 / "pg_ctl"), "postgresql-15")
    if not (PG15.parent / "lib" / "pg_cron.so").exists():
        require_tool("pg_cron.so of PostgreSQL 15", "postgresql-15-cron")
    top = Path(tempfile.mkdtemp(prefix="mc-"))  # short: the socket lives here
    as_postgres = _as_postgres()
    if as_postgres:
        shutil.chown(top, "postgres", "postgres")
    data = top / "data"
    started = False
    try:
        subprocess.run([*as_postgres, PG15 / "initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_postgres, PG15 / "pg_ctl", "-D", data, "-l", top / "log", "-w", "-o",
                        f"-c shared_preload_libraries=pg_cron -c cron.database_name=postgres -c listen_addresses=''"
                        f" -k {top}", "start"], check=True, capture_output=True, timeout=120)
        started = True
        server = CronCluster(data, top)
        with server.connect() as conn:
            conn.execute("CREATE EXTENSION pg_cron")
            conn.execute("CREATE DATABASE otherdb")
            conn.execute("CREATE ROLE someone LOGIN")
            conn.execute("CREATE ROLE maint LOGIN")  # the usual maintainer: it scheduled none of the jobs
            create_schema(conn)
            conn.execute("ALTER DATABASE postgres SET timezone TO 'UTC'")
        yield server
    finally:
        if started:
            subprocess.run([*as_postgres, PG15 / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def scheduled(cluster: CronCluster) -> Iterator[CronCluster]:
    """The guide's jobs and the custom ones, scheduled afresh for each test."""
    with cluster.connect() as conn:
        conn.execute(GUIDE)
        conn.execute(CUSTOM)
    yield cluster
    with cluster.connect() as conn:
        # Job ids from 1 again: each test reads them.
        conn.execute("DELETE FROM cron.job_run_details; DELETE FROM cron.job; ALTER SEQUENCE cron.jobid_seq RESTART")


def imported(cluster: CronCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return maintainer("import-pg-cron", "--database-url", cluster.url, *args)


def test_import_maps_the_guides_jobs_to_the_built_in_ones_and_everything_else_to_custom_jobs(
    scheduled: CronCluster, tmp_path: Path
) -> None:
    result = imported(scheduled)

    assert result.returncode == 0, result.stderr
    config = tomllib.loads(result.stdout)
    assert {name: config["jobs"][name] for name in config["jobs"]} == {
        "cleanup_old_events": {},  # the default schedule: nothing to keep
        "update_statistics": {},
        "maintain_parlant_events": {},
        "refresh_agent_analytics": {},
        "maintain_parlant_indexes": {"schedule": "30 5 * * 0"},  # differs from the default: kept
    }
    assert config["custom_jobs"] == {
        "nightly-vacuum-sessions": {"schedule": "15 1 * * *", "sql": "VACUUM (ANALYZE) parlant_session",
                                    "autocommit": True},
        "pg-cron-7": {"schedule": "30 4 * * *", "sql": "DELETE FROM parlant_agent WHERE name = 'gone'"},
        "paused-report": {"schedule": "0 6 * * 1", "sql": "SELECT count(*) FROM parlant_event", "enabled": False},
    }
    assert config["scheduler"] == {"schedule_timezone": "UTC"}  # pg_cron 1.4 reads schedules in GMT
    assert "# pg_cron job 1 (cleanup-old-events): last run failed at" in result.stdout
    not_imported = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["event"], line["level"], line["pg_cron_jobid"], line["pg_cron_jobname"]) for line in not_imported] \
        == [("pg_cron_job_not_imported", "warning", 9, "elsewhere"), ("pg_cron_job_not_imported", "warning", 10,
            "as-someone"), ("pg_cron_job_not_imported", "warning", 11, "both-days")]
    reasons = [line["reason"] for line in not_imported]
    assert "runs in database otherdb" in reasons[0] and "runs as someone" in reasons[1]
    assert "restricts both the day of month and the day of week" in reasons[2]
    for jobid in (9, 10, 11):
        assert f"# pg_cron job {jobid} (" in result.stdout.split("# Not imported:")[1]


def test_the_imported_file_is_accepted_as_it_is_and_lists_the_same_schedules(
    scheduled: CronCluster, tmp_path: Path
) -> None:
    config = tmp_path / "imported.toml"
    config.write_text(imported(scheduled).stdout)
    with scheduled.connect() as conn:
        pg_cron = dict(conn.execute("SELECT coalesce(jobname, 'job ' || jobid), schedule FROM cron.job"
                                    " WHERE database = 'postgres' AND username = 'postgres'"))

    listed = maintainer("list", "--format", "json", "--config", str(config))

    assert listed.returncode == 0, listed.stderr
    schedules = {row["job"]: row["schedule"] for row in json.loads(listed.stdout)}
    for name in ("cleanup-old-events", "update-statistics", "refresh-agent-analytics", "maintain-parlant-events",
                 "maintain-parlant-indexes", "paused-report"):
        assert schedules[name] == pg_cron[name]
    assert schedules["nightly-vacuum-sessions"] == pg_cron["Nightly Vacuum: sessions!"]
    assert schedules["pg-cron-7"] == pg_cron["job 7"]


def test_a_cron_timezone_setting_is_kept(scheduled: CronCluster) -> None:
    # cron.timezone is pg_cron 1.5's; 1.4 leaves the name free, so a session may set it as pg_cron 1.5 would.
    result = maintainer("import-pg-cron", "--database-url",
                        make_conninfo(scheduled.url, options="-c cron.timezone=Europe/Berlin"))

    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["scheduler"] == {"schedule_timezone": "Europe/Berlin"}


def test_json_output_lists_every_job_and_what_became_of_it(scheduled: CronCluster) -> None:
    result = imported(scheduled, "--format", "json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    entries = document["jobs"]
    assert (document["database"], document["schedule_timezone"]) == ("postgres", "UTC")  # pg_cron 1.4: GMT
    assert [(entry["jobid"], entry["kind"], entry["job"]) for entry in entries] == [
        (1, "built-in", "cleanup-old-events"), (2, "built-in", "update-statistics"),
        (3, "built-in", "refresh-agent-analytics"), (4, "built-in", "maintain-parlant-events"),
        (5, "built-in", "maintain-parlant-indexes"), (6, "custom", "nightly-vacuum-sessions"),
        (7, "custom", "pg-cron-7"), (8, "custom", "paused-report"), (9, "not imported", None),
        (10, "not imported", None), (11, "not imported", None)]
    assert entries[0]["last_status"] == "failed"


def test_check_refuses_a_cut_over_while_pg_cron_still_does_the_work_and_passes_once_it_is_unscheduled(
    scheduled: CronCluster, tmp_path: Path
) -> None:
    config = tmp_path / "imported.toml"
    config.write_text(imported(scheduled).stdout)

    before = maintainer("check", "--database-url", scheduled.url, "--config", str(config))
    statements = imported(scheduled, "--unschedule")
    with scheduled.connect() as conn:
        untouched = conn.execute("SELECT count(*) FROM cron.job").fetchone()
    applied = imported(scheduled, "--unschedule", "--apply")
    after = maintainer("check", "--database-url", scheduled.url, "--config", str(config))

    overlapping = [line for line in failures(before.stdout) if line.subject.startswith("pg_cron job")]
    assert {(line.job, line.subject) for line in overlapping} == {
        ("cleanup-old-events", "pg_cron job 1"), ("update-statistics", "pg_cron job 2"),
        ("refresh-agent-analytics", "pg_cron job 3"), ("maintain-parlant-events", "pg_cron job 4"),
        ("maintain-parlant-indexes", "pg_cron job 5"), ("nightly-vacuum-sessions", "pg_cron job 6"),
        ("pg-cron-7", "pg_cron job 7")}
    assert all(line.fix and line.fix.startswith(f"SELECT cron.unschedule({line.subject.split()[-1]});")
               for line in overlapping)
    assert statements.stdout.splitlines() == [f"SELECT cron.unschedule({jobid});" for jobid in range(1, 9)]
    assert untouched == (11,)  # nothing is unscheduled without --apply
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[0] == "unscheduled pg_cron job 1 (cleanup-old-events), now maintainer's" \
                                             " cleanup-old-events"
    with scheduled.connect() as conn:
        left = [row[0] for row in conn.execute("SELECT jobid FROM cron.job ORDER BY jobid")]
    assert left == [9, 10, 11]  # the jobs it did not import stay with pg_cron
    assert [(line.status, line.subject) for line in pg_cron_lines(after.stdout)] == [("ok", "pg_cron")]


@pytest.fixture
def maint(scheduled: CronCluster) -> Iterator[str]:
    """A URL for a role that scheduled none of pg_cron's jobs and, as pg_cron installs itself, may read none."""
    yield make_conninfo(scheduled.url, user="maint")
    with scheduled.connect() as conn:
        conn.execute("DROP POLICY IF EXISTS maintainer_reads_jobs ON cron.job")
        conn.execute("REVOKE USAGE ON SCHEMA cron FROM maint")


def pg_cron_lines(stdout: str) -> list[Line]:
    return [line for line in report(stdout) if line.subject.startswith("pg_cron")]


def test_a_role_that_cannot_see_every_pg_cron_job_is_told_and_the_grant_it_is_given_shows_them(
    scheduled: CronCluster, maint: str, tmp_path: Path
) -> None:
    config = tmp_path / "imported.toml"
    config.write_text(imported(scheduled).stdout)

    def check() -> list[Line]:
        return pg_cron_lines(maintainer("check", "--database-url", maint, "--config", str(config)).stdout)

    unreadable = check()
    refused = maintainer("import-pg-cron", "--database-url", maint)
    with scheduled.connect() as conn:
        conn.execute("GRANT USAGE ON SCHEMA cron TO maint")
    own_jobs_only = check()
    with scheduled.connect() as conn:
        conn.execute(own_jobs_only[0].fix.removeprefix("as a superuser: ") if own_jobs_only[0].fix else "")
    every_job = check()

    assert [(line.status, line.subject) for line in unreadable] == [("warn", "pg_cron")]
    assert "role maint may not read cron.job" in unreadable[0].detail
    assert unreadable[0].fix and unreadable[0].fix.startswith("as a superuser: GRANT USAGE ON SCHEMA cron TO maint;")
    assert refused.returncode == 1 and "may not read cron.job" in json.loads(refused.stderr)["error"]
    assert [(line.status, line.subject) for line in own_jobs_only] == [("warn", "pg_cron")]
    assert "sees only the pg_cron jobs it scheduled itself" in own_jobs_only[0].detail
    assert {(line.status, line.subject) for line in every_job} == {
        ("FAIL", f"pg_cron job {jobid}") for jobid in range(1, 8)}


def test_apply_removes_all_or_nothing_and_says_who_may_apply_it(scheduled: CronCluster, maint: str) -> None:
    with scheduled.connect() as conn:  # maint sees every job, but may unschedule none: they are postgres's
        conn.execute("GRANT USAGE ON SCHEMA cron TO maint;"
                     " CREATE POLICY maintainer_reads_jobs ON cron.job FOR SELECT TO maint USING (true)")

    refused = maintainer("import-pg-cron", "--unschedule", "--apply", "--database-url", maint)
    no_unschedule = maintainer("import-pg-cron", "--apply", "--database-url", maint)

    assert refused.returncode == 1
    error = [json.loads(line) for line in refused.stderr.splitlines()][-1]
    assert error["event"] == "command_failed"
    assert error["error"].startswith("nothing was unscheduled (one transaction): cron.unschedule() failed:")
    assert "SQLSTATE 42501" in error["error"] and "as the role that scheduled the jobs" in error["error"]
    with scheduled.connect() as conn:
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone() == (11,)
    assert no_unschedule.returncode == 2
    assert "--apply goes with --unschedule" in no_unschedule.stderr


def test_the_role_file_lets_the_maintainer_role_see_every_pg_cron_job(scheduled: CronCluster, tmp_path: Path) -> None:
    config = tmp_path / "imported.toml"
    config.write_text(imported(scheduled).stdout)
    with scheduled.connect() as conn:
        conn.execute((ROOT / "config" / "parlant_maintainer_role.sql").read_text())
        conn.execute((ROOT / "config" / "parlant_maintainer_role.sql").read_text())  # running it again is harmless
    try:
        as_role = make_conninfo(scheduled.url, user="parlant_maintainer")
        result = maintainer("check", "--database-url", as_role, "--config", str(config))

        assert {(line.status, line.subject) for line in pg_cron_lines(result.stdout)} == {
            ("FAIL", f"pg_cron job {jobid}") for jobid in range(1, 8)}
    finally:
        with scheduled.connect() as conn:
            conn.execute("DROP POLICY maintainer_reads_jobs ON cron.job; DROP OWNED BY parlant_maintainer;"
                         " DROP ROLE parlant_maintainer")


def test_a_database_without_pg_cron_is_simply_fine(database_url: str) -> None:
    result = maintainer("check", "--database-url", database_url)
    none = maintainer("import-pg-cron", "--database-url", database_url)

    assert not [line for line in report(result.stdout) if line.subject.startswith("pg_cron")]
    assert none.returncode == 1
    assert "pg_cron is not installed in database" in json.loads(none.stderr)["error"]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    with daemons(tmp_path) as start:
        yield start


def test_the_daemon_warns_of_an_overlap_at_start_and_each_heartbeat_and_shows_it_until_it_is_gone(
    scheduled: CronCluster, tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:

    config = write_config(tmp_path / "maintainer.toml", jobs_settings={
        "cleanup_old_events": {"enabled": True}, "update_statistics": {"enabled": True}})
    port = free_port()
    daemon = start_daemon(config, scheduled.url, MAINTAINER_HTTP_PORT=str(port), MAINTAINER_HTTP_HOST="127.0.0.1")

    warnings = daemon.wait_for_lines("pg_cron_overlap", count=4)  # at start and at the next heartbeat, each job
    assert {(line["job"], line["pg_cron_jobid"]) for line in warnings} == {
        ("cleanup-old-events", 1), ("update-statistics", 2)}
    assert all(line["fix"] == f"SELECT cron.unschedule({line['pg_cron_jobid']});" for line in warnings)
    wait_for(lambda: sample(scrape(port), "maintainer_pg_cron_overlap", maintenance_job="cleanup-old-events") == 1,
             20, "the overlap on /metrics")

    with scheduled.connect() as conn:
        conn.execute("SELECT cron.unschedule(1)")
    wait_for(lambda: sample(scrape(port), "maintainer_pg_cron_overlap", maintenance_job="cleanup-old-events") == 0,
             20, "the overlap gone from /metrics")
    seen = len(daemon.lines())
    daemon.wait_for_lines("heartbeat", count=len([line for line in daemon.lines() if line["event"] == "heartbeat"]) + 1)
    later = daemon.lines()[seen:]
    assert {line["job"] for line in later if line["event"] == "pg_cron_overlap"} <= {"update-statistics"}


def test_the_daemon_says_once_what_its_role_cannot_see_of_pg_cron(
    scheduled: CronCluster, maint: str, tmp_path: Path, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path / "maintainer.toml", jobs_settings={"cleanup_old_events": {"enabled": True}})
    daemon = start_daemon(config, maint)

    daemon.wait_for_lines("pg_cron_unchecked")
    heartbeats = len([line for line in daemon.lines() if line["event"] == "heartbeat"])
    daemon.wait_for_lines("heartbeat", count=heartbeats + 2)  # two more pg_cron checks, a heartbeat apart
    told = [line for line in daemon.lines() if line["event"] == "pg_cron_unchecked"]
    assert len(told) == 1
    assert "role maint may not read cron.job" in told[0]["reason"]
    assert told[0]["fix"].startswith("as a superuser: GRANT USAGE ON SCHEMA cron TO maint;")
