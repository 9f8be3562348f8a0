"""maintainer as a user runs it: one command that exits by itself, or daemons whose JSON log is read while they
run; each with none of the caller's MAINTAINER_* or DATABASE_URL, so a developer's own settings never leak in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from psycopg.conninfo import conninfo_to_dict

from jobs import REGISTRY
from tests.support.logs import json_lines, named
from tests.support.waiting import wait_for

FAST_SCHEDULER = {"heartbeat_interval": "1s", "shutdown_grace": "2s"}
FAST_RETRY = {"initial_wait": "0.1s", "max_wait": "0.5s"}


def clean_environment(*, without_libpq: bool = False, **env: str) -> dict[str, str]:
    """The caller's environment without any MAINTAINER_* or DATABASE_URL (nor PG* ``without_libpq``), plus ``env``."""
    dropped = ("MAINTAINER_", "PG") if without_libpq else ("MAINTAINER_",)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and k != "DATABASE_URL"}
    return {**clean, **env}


def maintainer(*args: str, without_libpq: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """One ``python -m maintainer`` command that exits by itself."""
    return subprocess.run(
        [sys.executable, "-m", "maintainer", *args],
        env=clean_environment(without_libpq=without_libpq, **env), capture_output=True, text=True, timeout=60,
        check=False,
    )


def write_config(
    path: Path,
    *,
    custom_jobs: dict[str, dict[str, Any]] | None = None,
    jobs_settings: dict[str, dict[str, Any]] | None = None,
    scheduler: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
) -> Path:
    """A configuration file with every built-in job off unless ``jobs_settings`` says otherwise, and fast timings."""
    tables: dict[str, dict[str, Any]] = {
        "scheduler": {**FAST_SCHEDULER, **(scheduler or {})},
        "retry": {**FAST_RETRY, **(retry or {})},
    }
    for job in REGISTRY.jobs.values():
        tables[f"jobs.{job.settings_key}"] = {"enabled": False, **(jobs_settings or {}).get(job.settings_key, {})}
    for name, settings in (custom_jobs or {}).items():
        tables[f"custom_jobs.{name}"] = settings
    # JSON strings, numbers, booleans and arrays of them are valid TOML values.
    path.write_text("\n".join(
        f"[{table}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        for table, values in tables.items()
    ))
    return path


def url_with_password(conninfo: str, password: str) -> str:
    """The test database as a URL that carries a password (trust authentication ignores it)."""
    params = conninfo_to_dict(conninfo)
    where = urlencode({key: params[key] for key in ("host", "port") if params.get(key)})
    return f"postgresql://{quote(str(params['user']))}:{quote(password)}@/{quote(str(params['dbname']))}?{where}"


@dataclass
class Daemon:
    """One ``maintainer run`` process; its stdout (the JSON log) goes to a file that can be read while it runs."""

    process: subprocess.Popen[bytes]
    log_path: Path
    stderr_path: Path

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log_path.read_text())

    def wait_for_lines(self, event: str, count: int = 1, timeout: float = 20, **fields: Any) -> list[dict[str, Any]]:
        """At least ``count`` lines of ``event``; fails at once if the daemon exits meanwhile."""
        def seen() -> list[dict[str, Any]]:
            if (code := self.process.poll()) is not None:
                pytest.fail(f"the daemon exited with {code} while waiting for {event}: {self.stderr_path.read_text()}")
            found = named(self.lines(), event, **fields)
            return found if len(found) >= count else []

        return wait_for(seen, timeout, f"{count} {event} line(s) with {fields}")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def exit_code(self, timeout: float) -> int | None:
        """The exit code, or None if the process is still running after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@contextmanager
def daemons(tmp_path: Path, **defaults: str) -> Iterator[Callable[..., Daemon]]:
    """``start(config, database_url, **env)`` starts ``maintainer run`` with ``defaults`` under ``env``;
    whatever happens, none outlives the block."""
    started: list[Daemon] = []

    def start(config: Path, database_url: str, **env: str) -> Daemon:
        index = len(started)
        log_path, stderr_path = tmp_path / f"daemon-{index}.jsonl", tmp_path / f"daemon-{index}.stderr"
        with log_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "maintainer", "run"], stdout=stdout, stderr=stderr,
                env=clean_environment(MAINTAINER_DATABASE_URL=database_url, MAINTAINER_CONFIG=str(config),
                                      **{**defaults, **env}),
            )
        started.append(Daemon(process, log_path, stderr_path))
        return started[-1]

    try:
        yield start
    finally:
        _stop_all(started)


def _stop_all(started: list[Daemon]) -> None:
    for daemon in started:
        daemon.terminate()
    for index, daemon in enumerate(started):
        if daemon.exit_code(10) is None:
            daemon.process.kill()
            daemon.process.wait()
        # Shown by pytest only when the test failed.
        print(f"--- daemon {index} exited {daemon.process.returncode}; last log lines:")
        print("\n".join(daemon.log_path.read_text().splitlines()[-30:]))
        print(f"--- daemon {index} stderr:\n{daemon.stderr_path.read_text()[-3000:]}")
