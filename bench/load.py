"""The application's side of the benchmark: a small, paced load that writes and reads events.

Each client thread has its own connection and its own active sessions, so its inserts take the next
``"offset"`` of a session no other client writes to (no unique conflicts, no waiting on each other). One
iteration is what a chat turn does to these tables: insert an event into a session, then read that
session's latest 50 events. Both operations are timed one by one. Clients are paced (``rate``
iterations per second in total): on a 2-core machine an unpaced load would saturate the CPU and measure
CPU contention instead of what the cleanup does to the application.

Every loop is bounded, in iterations and in time; a client that fails stops the load with its error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.measure import LatencyStats, latency_stats

_INSERT = """
INSERT INTO parlant_event (session_id, "offset", event_type, content, created_at)
VALUES (%s, %s, 'customer_message', %s, now() AT TIME ZONE 'UTC')
"""
_LATEST = """
SELECT id, "offset", event_type, content, created_at FROM parlant_event
WHERE session_id = %s ORDER BY "offset" DESC LIMIT 50
"""
_ACTIVE_SESSIONS = """
SELECT s.id, coalesce((SELECT max(e."offset") FROM parlant_event AS e WHERE e.session_id = s.id), -1)
FROM parlant_session AS s WHERE s.status = 'active' ORDER BY s.id LIMIT %s
"""
_CONTENT = '{"text": "benchmark load"}'
MAX_ITERATIONS_PER_CLIENT = 1_000_000


@dataclass
class _Client:
    """One application connection's state: the sessions it owns and what it measured."""

    sessions: list[list[Any]]  # [session id, last offset], mutated as the client inserts
    samples: list[tuple[str, float, float]] = field(default_factory=list)  # (operation, started at, seconds)
    iterations: int = 0
    error: BaseException | None = None


class ApplicationLoad:
    """``start()`` it, run something, then ``stop()`` it and ask ``stats(window_start, window_end)``."""

    def __init__(
        self, url: str, *, clients: int, rate: float, sessions_per_client: int = 25, max_seconds: float = 3600
    ) -> None:
        self.url = url
        self.clients = clients
        self.rate = rate
        self.sessions_per_client = sessions_per_client
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._clients: list[_Client] = []

    def start(self, warmup_iterations: int = 5, timeout: float = 30) -> None:
        """Connect every client and return once each has done a few iterations (connections warm)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            owned = conn.execute(_ACTIVE_SESSIONS, (self.clients * self.sessions_per_client,)).fetchall()
        if len(owned) < self.clients:
            raise RuntimeError(f"the application load needs {self.clients} active sessions, found {len(owned)}")
        self._clients = [
            _Client([[session, offset] for session, offset in owned[index :: self.clients]])
            for index in range(self.clients)
        ]
        interval = self.clients / self.rate if self.rate > 0 else 0.0
        for index, client in enumerate(self._clients):
            thread = threading.Thread(
                target=self._work, args=(client, interval), name=f"app-load-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + timeout
        while any(client.iterations < warmup_iterations for client in self._clients):
            self._raise_failures()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the application load did not warm up within {timeout:.0f} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if any(thread.is_alive() for thread in self._threads):
            raise RuntimeError(f"an application load client did not stop within {timeout:.0f} s")
        self._raise_failures()

    def stats(self, window_start: float, window_end: float) -> LatencyStats:
        """Operations that started within the window (``time.monotonic()`` values)."""
        latencies: dict[str, list[float]] = {"insert": [], "read": []}
        for client in self._clients:
            for operation, started, seconds in client.samples:
                if window_start <= started <= window_end:
                    latencies[operation].append(seconds)
        return latency_stats(latencies, window_end - window_start)

    def _raise_failures(self) -> None:
        for client in self._clients:
            if client.error is not None:
                raise RuntimeError(f"an application load client failed: {client.error}") from client.error

    def _work(self, client: _Client, interval: float) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, application_name="bench:app-load") as conn:
                self._loop(conn, client, interval)
        except BaseException as error:  # reported by start()/stop() in the main thread
            client.error = error

    def _loop(self, conn: psycopg.Connection[Any], client: _Client, interval: float) -> None:
        deadline = time.monotonic() + self.max_seconds
        next_at = time.monotonic()
        while not self._stop.is_set() and client.iterations < MAX_ITERATIONS_PER_CLIENT:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError(f"ran longer than its {self.max_seconds:.0f} s limit")
            if next_at > now:
                self._stop.wait(next_at - now)
                continue
            # Behind schedule (a slow operation): carry on at the pace, without a burst to catch up.
            next_at = max(next_at + interval, now)
            session = client.sessions[client.iterations % len(client.sessions)]
            session[1] += 1
            self._timed(client, conn, "insert", _INSERT, (session[0], session[1], _CONTENT))
            self._timed(client, conn, "read", _LATEST, (session[0],))
            client.iterations += 1

    @staticmethod
    def _timed(
        client: _Client, conn: psycopg.Connection[Any], operation: str, query: str, params: Sequence[Any]
    ) -> None:
        started = time.monotonic()
        cursor = conn.execute(query, params)
        if cursor.description is not None:
            cursor.fetchall()
        client.samples.append((operation, started, time.monotonic() - started))
