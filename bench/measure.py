"""Turning raw timings into the numbers the benchmark reports.

Percentiles are nearest-rank (the smallest value with at least p% of the values at or below it), so a
p99 is always a time that was really measured. Batch times are the differences between consecutive
``elapsed_ms`` of the job's ``cleanup_progress`` lines (one per batch), the first batch's being its own
``elapsed_ms``; they have the log's millisecond resolution and include the client's round trip and the
commit (each batch is its own transaction in autocommit).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None and not math.isnan(value)]
    return statistics.median(present) if present else None


@dataclass(frozen=True)
class BatchStats:
    """Per-batch transaction times of one cleanup run, in milliseconds."""

    batches: int
    max_ms: float
    p99_ms: float
    first_10pct_ms: float  # mean of the first tenth of the batches (at least one)
    last_10pct_ms: float
    flatness: float  # last_10pct_ms / first_10pct_ms: 1.0 means the walk does not slow down

    @classmethod
    def from_times(cls, times: Sequence[float]) -> BatchStats | None:
        if not times:
            return None
        tenth = max(1, len(times) // 10)
        first, last = statistics.fmean(times[:tenth]), statistics.fmean(times[-tenth:])
        return cls(
            batches=len(times), max_ms=max(times), p99_ms=percentile(times, 99), first_10pct_ms=first,
            last_10pct_ms=last, flatness=last / first if first > 0 else math.inf,
        )


def batch_series(progress: Sequence[dict[str, Any]]) -> tuple[list[float], list[int]]:
    """Milliseconds and rows of each batch, from the ``cleanup_progress`` lines of a run that logged every batch."""
    elapsed = [line["elapsed_ms"] for line in progress]
    deleted = [line["rows_deleted"] for line in progress]
    times = [float(now - before) for before, now in zip([0, *elapsed], elapsed, strict=False)]
    rows = [now - before for before, now in zip([0, *deleted], deleted, strict=False)]
    return times, rows


@dataclass(frozen=True)
class LatencyStats:
    """The application's operations (inserts and reads together) during one phase."""

    operations: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    insert_p99_ms: float
    read_p99_ms: float


def latency_stats(latencies_s: Mapping[str, Sequence[float]], seconds: float) -> LatencyStats:
    """From the latencies (in seconds) of each kind of operation, ``insert`` and ``read``."""
    every = [latency * 1000 for kind in latencies_s.values() for latency in kind]
    return LatencyStats(
        operations=len(every), seconds=seconds, ops_per_s=len(every) / seconds if seconds > 0 else math.nan,
        p50_ms=percentile(every, 50), p99_ms=percentile(every, 99), max_ms=max(every, default=math.nan),
        insert_p99_ms=percentile([latency * 1000 for latency in latencies_s.get("insert", [])], 99),
        read_p99_ms=percentile([latency * 1000 for latency in latencies_s.get("read", [])], 99),
    )
