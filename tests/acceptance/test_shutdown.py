"""Shutdown is bounded whatever the server does: a frozen backend, a frozen server, a hangup.

Freezing needs a cluster the tests own: an embedded PostgreSQL started for this module, never the shared
service. Every process frozen with SIGSTOP is resumed in a ``finally``.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from maintainer.embedded import start_server
from tests.support.commands import Daemon, write_config
from tests.support.logs import named
from tests.support.waiting import wait_for

STUCK = "stuck-sleep"
GRACE = 1.0
# After the grace: at most 2 s for the cancel request, 3 s for the run to end, and the process's own exit.
BOUND = GRACE + 2 + 3 + 3


class OwnServer:
    def __init__(self, data_dir: Path, url: str) -> None:
        self.data_dir, self.url = data_dir, url

    @property
    def postmaster(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and every process it started."""
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if parent == self.postmaster:
                    children.append(int(entry.name))
        return [self.postmaster, *children]


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnServer]:
    data_dir = Path(tempfile.mkdtemp(prefix="ms-")) / "pgdata"  # a short path: the socket lives there
    server = start_server(data_dir)
    try:
        yield OwnServer(data_dir, make_conninfo(server.get_uri(), dbname="postgres"))
    finally:
        server.cleanup()


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    for pid in pids:  # the postmaster first: it starts no process after that
        with suppress(ProcessLookupError):  # a backend or worker that ended since it was listed
            os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def stuck_daemon(tmp_path: Path, url: str, start_daemon: Callable[..., Daemon]) -> Daemon:
    config = write_config(
        tmp_path / "maintainer.toml", scheduler={"shutdown_grace": f"{GRACE}s", "overdue_check_interval": "1h"},
        custom_jobs={STUCK: {"schedule": "1 seconds", "sql": "SELECT pg_sleep(600)"}},
    )
    daemon = start_daemon(config, url)
    daemon.wait_for_lines("job_started", job=STUCK)
    return daemon


def backend_of(url: str, job: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = wait_for(lambda: conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active'"
            " AND query LIKE 'SELECT pg_sleep%%'", (f"maintainer:{job}",)).fetchone(), 10, f"the backend of {job}")
    return int(row[0])


def stop_and_time(daemon: Daemon) -> tuple[int | None, float]:
    started = time.monotonic()
    daemon.terminate()
    code = daemon.exit_code(60)
    seconds = time.monotonic() - started
    print(f"exit {code} {seconds:.1f} s after SIGTERM")  # shown with -s, or when the test fails
    return code, seconds


def last_event(daemon: Daemon) -> Any:
    return daemon.lines()[-1]["event"]


def test_sigterm_ends_the_process_in_time_when_the_jobs_backend_is_frozen(
    tmp_path: Path, own_server: OwnServer, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = stuck_daemon(tmp_path, own_server.url, start_daemon)

    with frozen([backend_of(own_server.url, STUCK)]):
        code, seconds = stop_and_time(daemon)

    assert (code, last_event(daemon)) == (0, "scheduler_stopped")
    assert seconds < BOUND, f"exited {seconds:.1f} s after SIGTERM"
    assert named(daemon.lines(), "job_cancelling", job=STUCK)
    assert named(daemon.lines(), "job_abandoned", job=STUCK)


def test_sigterm_ends_the_process_in_time_when_the_whole_server_is_frozen(
    tmp_path: Path, own_server: OwnServer, start_daemon: Callable[..., Daemon]
) -> None:
    daemon = stuck_daemon(tmp_path, own_server.url, start_daemon)
    backend_of(own_server.url, STUCK)  # its query is running

    with frozen(own_server.processes()):
        code, seconds = stop_and_time(daemon)

    assert (code, last_event(daemon)) == (0, "scheduler_stopped")
    assert seconds < BOUND, f"exited {seconds:.1f} s after SIGTERM"
    assert named(daemon.lines(), "job_cancel_failed", job=STUCK)
    assert daemon.stderr_path.read_text() == ""  # no traceback


def test_sighup_stops_the_daemon_gracefully_and_records_the_run_it_interrupts(
    tmp_path: Path, database_url: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path / "maintainer.toml", scheduler={"shutdown_grace": "0.5s"},
                          custom_jobs={STUCK: {"schedule": "1 seconds", "sql": "SELECT pg_sleep(600)"}})
    daemon = start_daemon(config, database_url)
    daemon.wait_for_lines("job_started", job=STUCK)

    daemon.process.send_signal(signal.SIGHUP)

    assert daemon.exit_code(30) == 0
    assert last_event(daemon) == "scheduler_stopped"
    [stopping] = named(daemon.lines(), "scheduler_stopping")
    assert (stopping["signal"], stopping["running"]) == ("SIGHUP", [STUCK])
    assert named(daemon.lines(), "job_cancelled", job=STUCK)
    with psycopg.connect(database_url) as conn:
        statuses = [row[0] for row in conn.execute(
            "SELECT status FROM maintainer.run_history WHERE job = %s", (STUCK,))]
    assert statuses == ["cancelled"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections and never answers: a database that hangs, or a black hole."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"postgresql://nobody@127.0.0.1:{listener.getsockname()[1]}/nothing"
    finally:
        stop.set()
        thread.join(5)
        for connection in [*accepted, listener]:
            connection.close()


def test_with_a_database_that_never_answers_the_daemon_stops_in_time_and_says_so_last(
    tmp_path: Path, silent_server: str, start_daemon: Callable[..., Daemon]
) -> None:
    config = write_config(tmp_path / "maintainer.toml", scheduler={"shutdown_grace": f"{GRACE}s"},
                          custom_jobs={STUCK: {"schedule": "1 seconds", "sql": "SELECT 1"}})
    daemon = start_daemon(config, silent_server, MAINTAINER_CONNECT_TIMEOUT="30s")
    daemon.wait_for_lines("job_started", job=STUCK)

    code, seconds = stop_and_time(daemon)

    assert (code, last_event(daemon)) == (0, "scheduler_stopped")
    assert seconds < BOUND, f"exited {seconds:.1f} s after SIGTERM"
    assert daemon.stderr_path.read_text() == ""
