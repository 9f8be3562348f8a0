"""At most one run of a job at a time, across every replica: a session-level advisory lock per job.

The lock is held by the connection that does the work, for the whole run, so it goes away with that
connection whatever happens to the process. Session advisory locks need a direct connection or session
pooling: under transaction pooling the lock would stay with a server connection other clients reuse.

Key: ``pg_try_advisory_lock(1835100526, crc32(job name) as a signed 32-bit integer)``; in ``pg_locks``
the lock shows as ``locktype = 'advisory'`` with ``classid = 1835100526`` (the bytes of "main").
"""

from __future__ import annotations

import zlib
from typing import Any

import psycopg

LOCK_NAMESPACE = 0x6D61696E


def lock_key(job: str) -> tuple[int, int]:
    checksum = zlib.crc32(job.encode())
    return LOCK_NAMESPACE, checksum - (1 << 32) if checksum >= 1 << 31 else checksum


def try_lock(conn: psycopg.Connection[Any], job: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", lock_key(job)).fetchone()
    return row == (True,)


def unlock(conn: psycopg.Connection[Any], job: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock_key(job))
