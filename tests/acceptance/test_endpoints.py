"""The daemon's HTTP listener as a probe, a Prometheus scraper and ``maintainer healthcheck`` see it.

Daemons run as subprocesses on a free port of 127.0.0.1; every request is a real HTTP request, every
wait a condition polled with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from maintainer import scheduler
from tests.support.commands import Daemon, daemons, maintainer, write_config
from tests.support.http import Reply, free_port, get, sample, scrape
from tests.support.logs import named
from tests.support.settings import load_settings
from tests.support.tools import require_tool
from tests.support.waiting import wait_for

JOB = "select-one"
FAILING_JOB = "always-failing"
EVERY_SECOND = {JOB: {"schedule": "1 seconds", "sql": "SELECT 1"}}
PASSWORD = "s3cret-endpoints-pw"
UNREACHABLE_URL = f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"
# Requests to the daemon go straight to it, whatever proxy the environment names.






def answer(daemon: Daemon, port: int, path: str, status: int, timeout: float = 20) -> Reply:
    """The first reply to ``path`` with ``status``; fails at once if the daemon exits meanwhile."""
    def reply() -> Reply | None:
        if (code := daemon.process.poll()) is not None:
            pytest.fail(f"the daemon exited with {code}: {daemon.stderr_path.read_text()}")
        try:
            received = get(port, path)
        except OSError:
            return None
        return received if received.status == status else None

    received = wait_for(reply, timeout, f"{path} to answer {status}")
    assert received is not None
    return received




def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, from /proc (Linux)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            inodes.add(fd.readlink().name.removeprefix("socket:[").removesuffix("]"))
        except OSError:
            continue  # closed since the listing
    ports = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local_address.rsplit(":", 1)[1], 16))
    return ports






def runs(port: int, job: str, outcome: str) -> float:
    return sample(scrape(port), "maintainer_runs_total", maintenance_job=job, outcome=outcome) or 0


def recent(timestamp: float, within: timedelta = timedelta(seconds=10)) -> bool:
    return abs(time.time() - timestamp) <= within.total_seconds()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``start_daemon(config, database_url, port)``: ``maintainer run`` listening on 127.0.0.1:``port``
    (0: no listener); whatever happens, none outlives the test."""
    with daemons(tmp_path, MAINTAINER_HTTP_HOST="127.0.0.1") as start:
        yield lambda config, database_url, port, **env: start(
            config, database_url, MAINTAINER_HTTP_PORT=str(port), **env
        )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Every built-in job off, one custom job every second, a heartbeat every second."""
    return write_config(tmp_path / "maintainer.toml", custom_jobs=EVERY_SECOND)


def test_healthz_answers_200_with_status_ok_and_a_recent_heartbeat(
    config: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    port = free_port()
    daemon = start_daemon(config, database_url, port)

    reply = answer(daemon, port, "/healthz", 200)

    assert reply.content_type == "application/json"
    health = reply.json()
    assert health["status"] == "ok"
    assert health["stopping"] is False
    # It may answer before the scheduler's first beat (the start counts as one); then the beat shows.
    beat = wait_for(lambda: get(port, "/healthz").json()["last_heartbeat"], 5, "the first heartbeat")
    first_heartbeat = datetime.fromisoformat(beat)
    assert datetime.now(UTC) - first_heartbeat < timedelta(seconds=5)
    wait_for(lambda: datetime.fromisoformat(get(port, "/healthz").json()["last_heartbeat"]) > first_heartbeat, 5,
             "the next heartbeat")
    assert named(daemon.lines(), "http_listening", host="127.0.0.1", port=port)
    assert listening_ports(daemon.process.pid) == {port}


def test_healthz_is_ok_while_starting_and_unhealthy_once_three_heartbeats_are_missed() -> None:
    # The listener opens before the scheduler's first beat: a probe in that gap must not restart it.
    started = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    now = started
    daemon = scheduler.Daemon(load_settings(scheduler={"heartbeat_interval": "10s"}), clock=lambda: now)

    assert daemon.health()[0], "no heartbeat yet, just started"
    now = started + timedelta(seconds=31)
    assert daemon.health() == (False, {"status": "unhealthy", "stopping": False, "last_heartbeat": None,
                                       "running": []})
    daemon._heartbeat()
    assert daemon.health()[0]
    now += timedelta(seconds=31)
    assert not daemon.health()[0]


def test_unknown_path_is_404(config: Path, database_url: str, start_daemon: Callable[..., Daemon]) -> None:
    port = free_port()
    daemon = start_daemon(config, database_url, port)
    answer(daemon, port, "/healthz", 200)

    reply = get(port, "/health")

    assert reply.status == 404
    assert reply.json() == {"error": "not found"}


def test_readyz_is_503_naming_the_missing_unique_index_and_200_again_once_it_is_back(
    tmp_path: Path, database_url: str, conn: psycopg.Connection[Any], start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path / "maintainer.toml", custom_jobs=EVERY_SECOND,
                          jobs_settings={"refresh_agent_analytics": {"enabled": True}})
    port = free_port()
    daemon = start_daemon(config, database_url, port)

    ready = answer(daemon, port, "/readyz", 200)

    assert ready.json() == {"status": "ready", "failed_checks": []}

    conn.execute("DROP INDEX parlant_agent_analytics_daily_key")
    not_ready = answer(daemon, port, "/readyz", 503)

    assert not_ready.content_type == "application/json"
    body = not_ready.json()
    assert body["status"] == "not ready"
    [failed] = body["failed_checks"]
    assert (failed["job"], failed["subject"], failed["ok"]) == (
        "refresh-agent-analytics", "parlant_agent_analytics_daily", False)
    assert "CREATE UNIQUE INDEX" in failed["fix"]
    assert get(port, "/healthz").status == 200, "a database that is not ready is no reason to restart the daemon"

    conn.execute("CREATE UNIQUE INDEX ON parlant_agent_analytics_daily (agent_id, day)")

    assert answer(daemon, port, "/readyz", 200).json()["failed_checks"] == []


def test_unreachable_database_makes_readyz_503_while_healthz_stays_200(
    config: Path, start_daemon: Callable[..., Daemon]
) -> None:
    port = free_port()
    daemon = start_daemon(config, UNREACHABLE_URL, port, MAINTAINER_CONNECT_TIMEOUT="1s")
    answer(daemon, port, "/healthz", 200)

    not_ready = answer(daemon, port, "/readyz", 503)

    [failed] = not_ready.json()["failed_checks"]
    assert (failed["job"], failed["subject"]) == ("server", "connection")
    assert failed["detail"].startswith("cannot connect")
    assert PASSWORD not in not_ready.body
    daemon.wait_for_lines("job_failed", job=JOB)
    health = get(port, "/healthz")
    assert health.status == 200, health.body
    assert health.json()["status"] == "ok"


def test_metrics_count_runs_by_outcome_and_show_success_heartbeat_overdue_and_skips(
    tmp_path: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(
        tmp_path / "maintainer.toml", scheduler={"overdue_grace": "2s", "overdue_check_interval": "1s"},
        custom_jobs={**EVERY_SECOND, FAILING_JOB: {"schedule": "1 seconds", "sql": "SELECT * FROM no_such_table"}},
    )
    port = free_port()
    daemon = start_daemon(config, database_url, port)
    answer(daemon, port, "/healthz", 200)

    first = wait_for(lambda: runs(port, JOB, "succeeded"), 20, f"a succeeded run of {JOB} in /metrics")
    wait_for(lambda: runs(port, JOB, "succeeded") > first, 10, f"more succeeded runs of {JOB}")
    wait_for(lambda: runs(port, FAILING_JOB, "failed"), 10, f"a failed run of {FAILING_JOB} in /metrics")
    wait_for(lambda: sample(scrape(port), "maintainer_job_overdue", maintenance_job=FAILING_JOB) == 1, 15,
             f"{FAILING_JOB} reported overdue")
    families = scrape(port)

    assert [family.name for family in families if not family.name.startswith("maintainer_")] == []
    assert [s.name for family in families for s in family.samples if not s.name.startswith("maintainer_")] == []
    # The scrape target's labels are Prometheus's own; no counter doubles itself with a _created series.
    assert {label for family in families for s in family.samples for label in s.labels} & {"job", "instance"} == set()
    assert [s.name for family in families for s in family.samples if s.name.endswith("_created")] == []
    assert sample(families, "maintainer_runs_total", maintenance_job=JOB, outcome="failed") == 0
    assert sample(families, "maintainer_runs_total", maintenance_job=FAILING_JOB, outcome="succeeded") == 0
    last_success = sample(families, "maintainer_last_success_timestamp_seconds", maintenance_job=JOB)
    assert last_success is not None
    assert recent(last_success)
    # A job that never succeeded has its series from the start: 0, never.
    assert sample(families, "maintainer_last_success_timestamp_seconds", maintenance_job=FAILING_JOB) == 0
    assert sample(families, "maintainer_job_interval_seconds", maintenance_job=FAILING_JOB) == 1
    started = sample(families, "maintainer_start_timestamp_seconds")
    assert started is not None and recent(started, timedelta(minutes=1))
    heartbeat = sample(families, "maintainer_heartbeat_timestamp_seconds")
    assert heartbeat is not None
    assert recent(heartbeat)
    assert sample(families, "maintainer_job_overdue", maintenance_job=JOB) == 0
    skip_reasons = {s.labels["reason"] for family in families for s in family.samples
                    if s.name == "maintainer_skips_total" and s.labels["maintenance_job"] == JOB}
    assert skip_reasons == {"lock_held", "already_ran", "still_running", "missed"}
    assert sample(families, "maintainer_skips_total", maintenance_job=JOB, reason="lock_held") == 0


def test_promtool_finds_nothing_to_fix_in_a_live_metrics_page(
    tmp_path: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    promtool = require_tool("promtool", "prometheus")
    config = write_config(tmp_path / "maintainer.toml", custom_jobs=EVERY_SECOND)
    port = free_port()
    daemon = start_daemon(config, database_url, port)
    answer(daemon, port, "/healthz", 200)
    wait_for(lambda: runs(port, JOB, "succeeded"), 20, f"a succeeded run of {JOB} in /metrics")

    page = get(port, "/metrics").body
    result = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, text=True, timeout=30,
                            check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_healthcheck_command_exits_0_while_the_daemon_runs_and_1_after_it_stopped(
    config: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    port = free_port()
    daemon = start_daemon(config, database_url, port)
    answer(daemon, port, "/healthz", 200)

    running = maintainer("healthcheck", MAINTAINER_HTTP_PORT=str(port))

    assert running.returncode == 0, running.stderr
    daemon.terminate()
    assert daemon.exit_code(10) == 0

    stopped = maintainer("healthcheck", MAINTAINER_HTTP_PORT=str(port))

    assert stopped.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in stopped.stderr


def test_healthcheck_command_ignores_a_proxy_in_the_environment(
    config: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    port = free_port()
    daemon = start_daemon(config, database_url, port)
    answer(daemon, port, "/healthz", 200)
    unreachable_proxy = f"http://127.0.0.1:{free_port()}"

    result = maintainer("healthcheck", MAINTAINER_HTTP_PORT=str(port), http_proxy=unreachable_proxy,
                        HTTP_PROXY=unreachable_proxy, no_proxy="", NO_PROXY="")

    assert result.returncode == 0, result.stderr


def test_second_daemon_on_a_port_in_use_exits_2_naming_MAINTAINER_HTTP_PORT(
    config: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    port = free_port()
    first = start_daemon(config, database_url, port)
    answer(first, port, "/healthz", 200)

    second = start_daemon(config, database_url, port)

    assert second.exit_code(20) == 2
    [failed] = named(second.lines(), "command_failed")
    assert f"MAINTAINER_HTTP_PORT={port}" in failed["error"]
    assert second.stderr_path.read_text() == ""
    # The port is refused before the daemon says it started: no scheduler_started, no job.
    assert [line["event"] for line in second.lines()] == ["command_failed"]
    assert get(port, "/healthz").status == 200, "the first daemon stopped answering"


def test_port_0_turns_the_listener_off_and_the_jobs_still_run(
    config: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    configured_port = free_port()
    # Top-level keys come before the first table; the environment's 0 must win over the file's port.
    config.write_text(f"http_port = {configured_port}\n{config.read_text()}")
    daemon = start_daemon(config, database_url, 0)

    daemon.wait_for_lines("job_succeeded", count=2, job=JOB)

    with pytest.raises(urllib.error.URLError) as refused:
        get(configured_port, "/healthz")
    assert isinstance(refused.value.reason, ConnectionRefusedError)
    assert listening_ports(daemon.process.pid) == set()
    assert named(daemon.lines(), "http_listening") == []


def test_every_line_the_daemon_writes_is_json_and_a_run_dropped_while_the_last_runs_is_a_counted_skip(
    tmp_path: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    slow = "slow-sleep"
    config = write_config(tmp_path / "maintainer.toml",
                          custom_jobs={slow: {"schedule": "1 seconds", "sql": "SELECT pg_sleep(2.5)"}})
    port = free_port()
    daemon = start_daemon(config, database_url, port)
    answer(daemon, port, "/healthz", 200)

    dropped = daemon.wait_for_lines("job_skipped", count=2, timeout=30, job=slow, reason="still_running")
    counted = sample(scrape(port), "maintainer_skips_total", maintenance_job=slow, reason="still_running")
    daemon.terminate()

    assert daemon.exit_code(20) == 0
    assert counted is not None and counted >= len(dropped)
    assert all(line["level"] == "info" and "scheduled_run_time" in line for line in dropped)
    for stream in (daemon.log_path, daemon.stderr_path):
        for text in stream.read_text().splitlines():
            line = json.loads(text)  # a line that is not JSON fails here, naming itself
            assert {"event", "level", "timestamp"} <= line.keys(), text
    assert named(daemon.lines(), "scheduler_stopped")
