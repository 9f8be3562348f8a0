"""``maintainer run``: the daemon that runs every enabled job on its schedule, for months, unattended.

One APScheduler job per maintenance job (at most one instance in this process, missed runs
coalesced). Across replicas the advisory lock of each run keeps runs apart, and the claim of each
scheduled time makes a run that another replica already did a skip (``already_ran``), not a second run.

On SIGTERM or SIGINT no new run starts, a running job is asked to stop and given ``shutdown_grace`` to
finish, then its query is cancelled on the server; the process exits 0. It exits non-zero only for
configuration errors: a database that is away is a failed (and retried) run, not a crash.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import psycopg
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from maintainer import endpoints, logs, metrics
from maintainer.clock import Clock, utc_now
from maintainer.errors import ConfigError, MaintainerError
from maintainer.history import History
from maintainer.job import Job, SkipReason
from maintainer.logs import get_logger, redact
from maintainer.overdue import overdue_jobs
from maintainer.pg_cron import OverlapWatch
from maintainer.readiness import Answer, liveness, readiness
from maintainer.runner import RunControl, run_job
from maintainer.schedule import expected_interval, last_fire_time, next_fire_times
from maintainer.settings import Settings
from maintainer.signals import StopRequest, stop_on_signals

_CANCEL_WAIT = timedelta(seconds=3)  # after cancelling its query, how long a run gets to wind down


class Daemon:
    """The scheduler of every enabled job, and what watches it.

    - ``settings``, ``clock``: as loaded, and the time (injected for tests);
    - ``history``: the run history, shared by every run;
    - ``stop``: set by a stop signal (or a test) to end :meth:`run`;
    - ``started_at``, ``last_heartbeat``: for the liveness probe and the overdue check.

    Its own duties are the scheduler's jobs and the shutdown; the runs, the probes, the overdue check and
    the pg_cron watch each live in their own module.
    """

    def __init__(self, settings: Settings, clock: Clock = utc_now):
        self.settings = settings
        self.clock = clock
        self.history = History(settings)
        self.log = get_logger()
        self.stop = StopRequest()
        self.started_at = clock()
        self.last_heartbeat: datetime | None = None
        self._jobs = {name: job for name, job in settings.available_jobs().items()
                      if settings.job_settings(name).enabled}
        self._triggers = {name: settings.trigger(name) for name in self._jobs}
        self._running: dict[str, RunControl] = {}
        self._running_changed = threading.Condition()
        self._last_success: dict[str, datetime] = {}
        self._pg_cron = OverlapWatch(settings, list(self._jobs))

    @property
    def stopping(self) -> threading.Event:
        return self.stop.event

    def run(self) -> int:
        """Run until SIGTERM, SIGINT or SIGHUP; returns the exit code (0).

        Bounded whatever the server does: after the signal, ``shutdown_grace`` for the running job, at most
        2 s for the server to take the cancel request and 3 s for the run to wind down; a run that is still
        stuck then (its server frozen) is left behind, and the caller exits the process without it."""
        with stop_on_signals(self.stop):
            return self._run()

    def _run(self) -> int:
        now = self.clock()
        metrics.STARTED.set(self.started_at.timestamp())
        for name, trigger in self._triggers.items():
            metrics.declare(name, expected_interval(trigger, now), None)
        # The port is bound (or refused, exit 2) before the daemon says it started; nothing here waits for the
        # database, which the scheduler's first jobs reach in the background.
        server = self._serve_http()
        self.log.info("scheduler_started", config=self._effective_config(), jobs={
            name: {"schedule": self.settings.job_settings(name).schedule,
                   "next_run": next_fire_times(self._triggers[name], now, 1)[0].isoformat()}
            for name in self._jobs
        })
        scheduler = self._build_scheduler()
        scheduler.start()
        self.stopping.wait()
        self.log.info("scheduler_stopping", signal=self.stop.signal, running=sorted(self._running))
        scheduler.shutdown(wait=False)
        self._stop_running_jobs()
        self.log.info("scheduler_stopped", uptime_s=round((self.clock() - self.started_at).total_seconds()))
        logs.close()
        if server is not None:
            server.shutdown()
        return 0

    @property
    def abandoned(self) -> list[str]:
        """Jobs whose run had not ended when the daemon stopped waiting for it."""
        with self._running_changed:
            return sorted(self._running)

    def _serve_http(self) -> ThreadingHTTPServer | None:
        host, port = self.settings.http_host, self.settings.http_port
        if not port:
            return None
        try:
            server = endpoints.serve(host, port, self.health, self.readiness)
        except OSError as error:
            raise ConfigError(f"http_port (MAINTAINER_HTTP_PORT={port}): cannot listen on {host}:{port}: "
                              f"{error.strerror}; choose a free port, or 0 to turn the listener off") from None
        self.log.info("http_listening", host=host, port=port, paths=["/healthz", "/readyz", "/metrics"])
        return server

    def health(self) -> Answer:
        return liveness(self.clock(), self.last_heartbeat, self.started_at, self.settings.scheduler.heartbeat_interval,
                        self.stopping.is_set(), sorted(self._running))

    def readiness(self) -> Answer:
        return readiness(self.settings)

    def _open_history(self) -> None:
        """The run history's table, and each job's last success from it (every replica's) for the metrics."""
        for name, when in self._history_successes().items():
            if name in self._jobs and when > self._last_success.get(name, when - timedelta(seconds=1)):
                metrics.LAST_SUCCESS.labels(name).set(when.timestamp())

    def _history_successes(self) -> dict[str, datetime]:
        if not (self.history.ensure() and self.history.enabled):
            return {}
        try:
            return {name: row["last_success_at"] for name, row in self.history.last_runs().items()
                    if row["last_success_at"]}
        except psycopg.Error as error:  # the database is away: the history is a convenience (anything else: error)
            self.log.warning("history_unavailable", error_type=type(error).__name__, error=str(error))
            return {}

    def _on_dropped_run(self, event: JobSubmissionEvent | JobExecutionEvent) -> None:
        """APScheduler dropped a scheduled run: this process's previous run of the job is still going, or the
        scheduler woke too late for it (past misfire_grace_time)."""
        if event.job_id not in self._jobs:
            return
        if isinstance(event, JobSubmissionEvent):
            reason, run_times = SkipReason.STILL_RUNNING, event.scheduled_run_times
        else:
            reason, run_times = SkipReason.MISSED, [event.scheduled_run_time]
        for run_time in run_times:
            metrics.SKIPS.labels(event.job_id, reason).inc()
            self.log.info("job_skipped", job=event.job_id, reason=reason, scheduled_run_time=run_time.isoformat())

    def _build_scheduler(self) -> BackgroundScheduler:
        config = self.settings.scheduler
        scheduler = BackgroundScheduler(
            timezone=config.schedule_timezone,
            executors={"default": ThreadPoolExecutor(max_workers=len(self._jobs) + 3)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(config.misfire_grace_time.total_seconds())},
        )
        scheduler.add_listener(self._on_dropped_run, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        for name, job in self._jobs.items():
            scheduler.add_job(self._run_job, self._triggers[name], args=[job], id=name, name=name)
        scheduler.add_job(self._heartbeat, IntervalTrigger(seconds=config.heartbeat_interval.total_seconds()),
                          id="heartbeat", next_run_time=self.clock())
        scheduler.add_job(self._check_overdue,
                          IntervalTrigger(seconds=config.overdue_check_interval.total_seconds()), id="overdue")
        scheduler.add_job(self._open_history, id="open-history", next_run_time=self.clock())
        scheduler.add_job(self._pg_cron.check, IntervalTrigger(seconds=config.heartbeat_interval.total_seconds()),
                          id="pg-cron", next_run_time=self.clock())
        scheduler.add_job(self._prune_history, IntervalTrigger(hours=24), id="prune-history",
                          next_run_time=self.clock())
        return scheduler

    def _run_job(self, job: Job[Any]) -> None:
        control = RunControl()
        with self._running_changed:
            if self.stopping.is_set():
                return
            self._running[job.name] = control
        try:
            tick = last_fire_time(self._triggers[job.name], self.clock())
            run = run_job(self.settings, job, clock=self.clock, control=control, retry=self.settings.retry,
                          history=self.history, tick=tick)
            if run.result.stop_reason is None:
                self._last_success[job.name] = self.clock()
        except MaintainerError:
            pass  # the runner logged it (job_failed, job_skipped or job_cancelled), and the daemon goes on
        except Exception:  # outside what the runner reports (the job's schedule, say): a bug, said here
            self.log.critical("unhandled_exception", job=job.name, exc_info=True)
        finally:
            with self._running_changed:
                del self._running[job.name]
                self._running_changed.notify_all()

    def _stop_running_jobs(self) -> None:
        grace = self.settings.scheduler.shutdown_grace.total_seconds()
        with self._running_changed:
            for control in self._running.values():
                control.stop.set()
            if self._running_changed.wait_for(lambda: not self._running, timeout=grace):
                return
            running = list(self._running.items())
        # Outside the lock: a cancel request may take its whole timeout, and the run must be free to end meanwhile.
        for name, control in running:
            self.log.warning("job_cancelling", job=name, reason="shutdown_grace expired")
            if not control.cancel():
                self.log.warning("job_cancel_failed", job=name, reason="the server did not take the cancel request")
        with self._running_changed:
            if not self._running_changed.wait_for(lambda: not self._running, timeout=_CANCEL_WAIT.total_seconds()):
                for name in self._running:
                    self.log.error("job_abandoned", job=name, reason="its run did not end after the cancel; the"
                                   " server releases its lock when it notices the connection closed")

    def _heartbeat(self) -> None:
        self.last_heartbeat = self.clock()
        metrics.HEARTBEAT.set(self.last_heartbeat.timestamp())
        self.log.info("heartbeat", uptime_s=round((self.last_heartbeat - self.started_at).total_seconds()),
                      running=sorted(self._running))

    def _check_overdue(self) -> None:
        now = self.clock()
        last_success: dict[str, datetime | None] = dict(self._last_success)
        # Successes of every replica count, not only this process's.
        for name, when in self._history_successes().items():
            last_success[name] = max(when, last_success.get(name) or when)
        intervals = {name: expected_interval(trigger, now) for name, trigger in self._triggers.items()}
        overdue = overdue_jobs(now, intervals, last_success, self.started_at, self.settings.scheduler.overdue_grace)
        for name in self._jobs:
            metrics.OVERDUE.labels(name).set(1 if name in overdue else 0)
        for name, details in overdue.items():
            self.log.error("job_overdue", job=name, **details)

    def _prune_history(self) -> None:
        try:
            pruned = self.history.prune(self.clock())
        except psycopg.Error as error:
            self.log.warning("history_prune_failed", error_type=type(error).__name__, error=str(error))
            return
        if pruned:
            self.log.info("history_pruned", rows_deleted=pruned)

    def _effective_config(self) -> dict[str, Any]:
        config = self.settings.model_dump(mode="json", exclude={"database_url"})
        url = self.settings.database_url
        config["database_url"] = redact(url.get_secret_value()) if url else None
        return config

