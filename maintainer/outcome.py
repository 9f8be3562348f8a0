"""How a run ended, said in one place: the metrics, the run history's record and the outcome log line.

Every run logs ``job_started`` (the runner), each retry ``job_retrying``, and then exactly one of
``job_succeeded``, ``job_failed``, ``job_cancelled`` or ``job_skipped``, all but the first from here. A dry
run is logged, never counted or recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from maintainer import metrics
from maintainer.clock import Clock
from maintainer.errors import MaintainerError
from maintainer.history import History, RunRecord
from maintainer.job import Job, Outcome, Result, RowCount, SkipReason, StopReason


@dataclass
class Progress:
    """What the attempts of one run have done so far.

    - ``attempts``: started, from 1;
    - ``locked_at``: when the run first held its lock (the history's ``started_at``);
    - ``work_ended_at``: when its work ended, before the lock was released;
    - ``rows``: the rows every attempt committed.
    """

    attempts: int = 0
    locked_at: datetime | None = None
    work_ended_at: datetime | None = None
    rows: RowCount = field(default_factory=RowCount)


@dataclass(frozen=True)
class RunOutcome:
    """Reports the end of one run of ``job``: each method logs its line, and for a real run counts it in the
    metrics and records it in the history (when there is one)."""

    job: Job[Any]
    run_id: str
    dry_run: bool
    log: structlog.typing.FilteringBoundLogger
    history: History | None
    clock: Clock
    monotonic: Callable[[], float]
    started: float  # monotonic() when the run started
    started_at: datetime
    progress: Progress

    def elapsed_ms(self) -> int:
        return round((self.monotonic() - self.started) * 1000)

    def retrying(self, attempt: int, wait_s: float, error: BaseException | None) -> None:
        """An attempt failed transiently and another follows (the retry policy's ``on_retry``)."""
        metrics.RETRIES.labels(self.job.name).inc()
        self.log.warning("job_retrying", attempt=attempt, wait_s=round(wait_s, 2),
                         error_type=type(getattr(error, "__cause__", None) or error).__name__,
                         sqlstate=getattr(error, "sqlstate", None), error=str(error))

    def skipped(self, reason: SkipReason) -> None:
        """Another run holds the job's lock, or another replica already ran this scheduled time."""
        metrics.SKIPS.labels(self.job.name, reason).inc()
        self.log.info("job_skipped", reason=reason, duration_ms=self.elapsed_ms())

    def succeeded(self, result: Result) -> None:
        """The job returned: it succeeded, unless it stopped early for a shutdown (then it was cancelled)."""
        if result.stop_reason is StopReason.SHUTDOWN:
            self.log.warning("job_cancelled", duration_ms=self._count(Outcome.CANCELLED),
                             attempts=self.progress.attempts, **result.summary)
            return
        duration_ms = self._count(Outcome.SUCCEEDED, stop_reason=result.stop_reason, result=result.summary)
        retried = {"attempts": self.progress.attempts} if self.progress.attempts > 1 else {}
        self.log.info("job_succeeded", duration_ms=duration_ms, **retried, **result.summary)

    def cancelled(self, error: MaintainerError) -> None:
        """Stopped by shutdown before or while it worked, its query cancelled on the server."""
        self.log.warning("job_cancelled", duration_ms=self._count(Outcome.CANCELLED, error=str(error)),
                         attempts=self.progress.attempts, rows_affected=self.progress.rows.total)

    def failed(self, error: BaseException) -> None:
        """A failure the job or the driver explained (MaintainerError), or one nobody expected: then with the
        traceback."""
        expected = isinstance(error, MaintainerError)
        sqlstate = getattr(error, "sqlstate", None)
        message = str(error) if expected else f"{type(error).__name__}: {error}"
        duration_ms = self._count(Outcome.FAILED, sqlstate=sqlstate, error=message)
        cause = (error.__cause__ or error) if expected else error
        fields = {"duration_ms": duration_ms, "attempts": self.progress.attempts,
                  "error_type": type(cause).__name__, "error": str(error), "rows_affected": self.progress.rows.total}
        if expected:
            self.log.error("job_failed", sqlstate=sqlstate, **fields)
        else:
            self.log.exception("job_failed", **fields)

    def _count(self, outcome: Outcome, *, sqlstate: str | None = None, error: str | None = None,
               stop_reason: StopReason | None = None, result: dict[str, Any] | None = None) -> int:
        """Count and record a finished real run; returns its duration in ms."""
        duration_ms = self.elapsed_ms()
        if self.dry_run:
            return duration_ms
        name, progress = self.job.name, self.progress
        metrics.RUNS.labels(name, outcome).inc()
        metrics.DURATION.labels(name).observe(duration_ms / 1000)
        if self.job.deletes_rows:
            metrics.ROWS_DELETED.labels(name).inc(progress.rows.total)
        if outcome is Outcome.SUCCEEDED:
            metrics.LAST_SUCCESS.labels(name).set(self.clock().timestamp())
        if self.history is not None:
            self.history.record(RunRecord(
                name, self.run_id, progress.locked_at or self.started_at, progress.work_ended_at or self.clock(),
                outcome, progress.attempts, progress.rows.total, sqlstate, error, stop_reason, result,
            ))
        return duration_ms
