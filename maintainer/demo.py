"""``maintainer demo``: the retention cleanup end to end on a throwaway embedded PostgreSQL."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TextIO

import psycopg

from maintainer.clock import utc_now
from maintainer.embedded import start_server
from maintainer.fixture import add_synthetic_data, create_schema
from maintainer.registry import Registry
from maintainer.runner import run_job
from maintainer.settings import load_settings


def run_demo(registry: Registry, events: int, out: TextIO) -> None:
    with tempfile.TemporaryDirectory(prefix="maintainer-demo-") as scratch:
        server = start_server(Path(scratch) / "pgdata")
        try:
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                version = conn.info.server_version
                conn.execute("CREATE DATABASE parlant_demo")
            url = server.get_uri("parlant_demo")
            print(f"Started an embedded PostgreSQL {version // 10000}; generating {events:,} synthetic events...",
                  file=out)
            with psycopg.connect(url) as conn:
                create_schema(conn)
                add_synthetic_data(conn, events=events, now=utc_now())
            settings = load_settings(registry, database_url=url)
            cleanup = settings.job("cleanup-old-events")
            for title, dry_run in (("Before", True), ("Cleanup", False), ("After", True)):
                run = run_job(settings, cleanup, dry_run=dry_run)
                print(f"\n== {title}: maintainer run-once cleanup-old-events{' --dry-run' if dry_run else ''}",
                      file=out)
                print(run.result.report, file=out, flush=True)
        finally:
            server.cleanup()
