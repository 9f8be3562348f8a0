"""Fixtures that run ``maintainer run`` as subprocesses: none outlives its test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.commands import Daemon, daemons
from tests.support.logs import LogLines


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons with ``start_daemon(config, database_url)``, without an HTTP listener: replicas on one
    machine would want the same port."""
    with daemons(tmp_path, MAINTAINER_HTTP_PORT="0") as start:
        yield start


@pytest.fixture
def log() -> LogLines:
    """maintainer's log lines in this process, from here on, parsed."""
    return LogLines()
