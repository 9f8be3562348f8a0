"""The retry policy, whole: which failures another attempt can cure, and how long to wait for it.

Transient are the failures of the moment: the connection (SQLSTATE class 08, or lost without a SQLSTATE),
serialization failure, deadlock, lock timeout, the server shutting down or starting, too many connections.
A missing table, a privilege, a syntax error or a broken view fails the same way again: never retried.
Attempts back off exponentially with jitter, bounded in number and in total time, and end at shutdown.
No other module retries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import psycopg
import tenacity
from pydantic import BaseModel, ConfigDict, Field

from maintainer.job import Duration

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})


def is_transient(error: psycopg.Error) -> bool:
    """Whether another attempt can cure this server or connection error."""
    sqlstate = error.sqlstate
    if sqlstate is None:
        return isinstance(error, psycopg.OperationalError)
    return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")


class RetrySettings(BaseModel):
    """``[retry]``: at most ``max_attempts`` attempts within ``max_total``; the first wait ``initial_wait``,
    doubling up to ``max_wait``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=4, ge=1, le=20)
    initial_wait: Duration = timedelta(seconds=5)
    max_wait: Duration = timedelta(minutes=2)
    max_total: Duration = timedelta(minutes=15)


OnRetry = Callable[[int, float, BaseException | None], None]
"""Told of each retry: the attempt that failed (from 1), the seconds until the next, and its error."""


def retrying(policy: RetrySettings | None, stop: threading.Event, on_retry: OnRetry) -> tenacity.Retrying:
    """Calls its function again while it raises an error that says it is transient (``JobFailed.transient``);
    without a ``policy``, once."""
    if policy is None:
        return tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        on_retry(state.attempt_number, state.upcoming_sleep, state.outcome.exception() if state.outcome else None)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda error: getattr(error, "transient", False) is True),
        stop=(
            tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_after_delay(policy.max_total.total_seconds())
            | tenacity.stop_when_event_set(stop)
        ),
        # initial_wait, doubling each attempt, plus up to initial_wait of jitter so replicas do not retry in step
        wait=tenacity.wait_exponential_jitter(
            multiplier=policy.initial_wait.total_seconds(), jitter=policy.initial_wait.total_seconds(),
            max=policy.max_wait.total_seconds(),
        ),
        # Not past a shutdown: the next attempt then sees the stop and cancels.
        sleep=lambda seconds: _sleep_unless_stopped(stop, seconds),
        before_sleep=before_sleep,
        reraise=True,
    )


def _sleep_unless_stopped(stop: threading.Event, seconds: float) -> None:
    stop.wait(seconds)
