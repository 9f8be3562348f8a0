"""The benchmark at a tiny scale, as CI runs it: it completes and its variants delete the same rows.

The performance targets are the benchmark's own printed verdicts, never asserted here: at 20,000 events
they say nothing, and a test must not depend on how fast the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from bench.report import label
from maintainer.fixture import add_synthetic_data
from tests.support.parlant import NOW
from tests.support.paths import ROOT

SUMMARY_KEYS = {
    "ratio_vs_single_delete", "ratio_spread", "max_batch_ms", "p99_batch_ms", "flatness", "app_p99_ratio", "rss_mb",
    "rows_deleted", "same_rows", "audit_seconds", "verdicts", "steady_ratio_vs_single_delete", "steady_growth",
    "steady_same_rows", "steady",
}


def test_benchmark_runs_at_tiny_scale_and_every_variant_deletes_the_same_rows(server_url: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--events", "20000", "--steady-events", "5000", "--batch-sizes", "1000",
         "--runs", "1", "--pairs", "2", "--database-url", server_url],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["same_rows"] is True
    assert summary["ratio_spread"]["samples"] == 2
    # The steady state: both sizes, every retention, each maintainer variant deleting the single DELETE's rows.
    assert summary["steady_same_rows"] is True
    assert set(summary["steady_ratio_vs_single_delete"]) == {"5000", "20000"}
    assert {(row["events"], row["retention_days"]) for row in summary["steady"].values()} == {
        (events, days) for events in (5000, 20000) for days in (90, 85, 80)}
    assert all(row["nightly_path"] == "sessions" for row in summary["steady"].values())
    # Each steady template got the index maintainer check advises for the nightly window, as an operator would.
    assert summary["steady_schema"] == "advised"
    advised = ("as maintainer check advises: CREATE INDEX CONCURRENTLY parlant_event_created_at_cleanup_idx"
               " ON parlant_event (created_at, session_id)")
    assert completed.stdout.count(advised) == 2
    assert set(summary["rows_deleted"]) == {
        "single_delete", "maintainer_default", "batch_1000", "single_delete_under_load",
        "maintainer_default_under_load",
    }
    assert len(set(summary["rows_deleted"].values())) == 1
    assert summary["audit_would_delete"] == summary["rows_deleted"]["single_delete"] > 0


@pytest.mark.parametrize(("argument", "named"), [
    ("pause_between_batches=soon", "pause_between_batches: Value error, must be a duration"),
    ("batch_size=0", "batch_size: Input should be greater than or equal to 1"),
    ("batch_sise=100", "got 'batch_sise=100'"),
    ("progress_every_batches=10", "got 'progress_every_batches=10'"),
    ("retention_days=30", "got 'retention_days=30'"),
])
def test_benchmark_refuses_a_bad_cleanup_setting_naming_it_before_it_builds_anything(argument: str, named: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--set", argument], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )

    assert completed.returncode == 2
    assert named in completed.stderr
    assert completed.stdout == ""


def test_benchmark_refuses_event_content_too_wide_for_the_table_row() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--content-bytes", "4000"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )

    assert completed.returncode == 2
    assert "--content-bytes from 32 to 1800" in completed.stderr


def test_wider_synthetic_events_carry_the_content_asked_for(conn: psycopg.Connection[Any]) -> None:
    add_synthetic_data(conn, events=400, now=NOW, content_bytes=500)

    widths = conn.execute("SELECT min(length(content->>'text')), max(length(content->>'text')),"
                          " min(pg_column_size(e.*)) FROM parlant_event AS e").fetchone()
    assert widths is not None
    shortest, longest, narrowest_row = widths
    assert (shortest, longest) == (500, 500)
    assert narrowest_row > 500


def test_benchmark_rows_are_named_for_the_settings_they_ran_with() -> None:
    settings = {"batch_size": "20000", "pause_between_batches": "1ms"}

    assert label("maintainer_default", {}) == "(b) maintainer, defaults"
    assert label("maintainer_default", settings) == "(b) maintainer, batch_size=20000, pause_between_batches=1ms"
    assert label("batch_1000", settings) == "(c) maintainer, batch_size 1,000, pause_between_batches=1ms"
    assert label("during_maintainer_default", settings).startswith("during (b) maintainer, batch_size=20000")
