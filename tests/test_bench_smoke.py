"""The benchmark at a tiny scale, as CI runs it: it completes and its variants delete the same rows.

The performance targets are the benchmark's own printed verdicts, never asserted here: at 20,000 events
they say nothing, and a test must not depend on how fast the machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = {
    "ratio_vs_single_delete", "max_batch_ms", "p99_batch_ms", "flatness", "app_p99_ratio", "rss_mb", "rows_deleted",
    "same_rows", "audit_seconds", "verdicts",
}


@pytest.mark.acceptance
def test_benchmark_runs_at_tiny_scale_and_every_variant_deletes_the_same_rows(server_url: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--events", "20000", "--batch-sizes", "1000", "--runs", "1",
         "--database-url", server_url],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )

    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["same_rows"] is True
    assert set(summary["rows_deleted"]) == {
        "single_delete", "maintainer_default", "batch_1000", "single_delete_under_load",
        "maintainer_default_under_load",
    }
    assert len(set(summary["rows_deleted"].values())) == 1
    assert summary["audit_would_delete"] == summary["rows_deleted"]["single_delete"] > 0
