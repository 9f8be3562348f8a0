"""Where the database URL comes from, and whether it can be parsed: one order, and errors that name the
source and the part that is wrong without ever quoting the URL (it holds the password)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from maintainer.errors import ConfigError

URL_FILE_ENV = "MAINTAINER_DATABASE_URL_FILE"
LIBPQ_ENVIRONMENT = ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE", "PGUSER")


def database_url_source(flag: str | None, configured: str | None) -> tuple[str | None, str]:
    """The database URL and where it comes from: the first of these that is set and not empty.

    1. ``--database-url`` (``flag``);
    2. MAINTAINER_DATABASE_URL;
    3. DATABASE_URL (what platforms that provision a database set);
    4. the file MAINTAINER_DATABASE_URL_FILE names (Kubernetes and Docker secrets arrive as files);
    5. ``database_url`` in the configuration files (``configured``);
    6. libpq's own environment (PGHOST, PGSERVICE...): the URL is then empty, and libpq decides.

    (None, ...) when there is none of them: a command that connects then says how to set one.
    """
    if flag and flag.strip():
        return flag, "--database-url"
    for name in ("MAINTAINER_DATABASE_URL", "DATABASE_URL"):
        if (value := os.environ.get(name)) and value.strip():
            return value, name
    if url_file := os.environ.get(URL_FILE_ENV):
        source = f"the file {URL_FILE_ENV}={url_file}"
        try:
            url = Path(url_file).read_text().strip()
        except OSError as error:
            raise ConfigError(f"{URL_FILE_ENV}={url_file}: cannot read it: {error.strerror}") from None
        if not url:
            raise ConfigError(f"{URL_FILE_ENV}={url_file}: the file is empty (a secret never filled in?)")
        return url, source
    if configured and configured.strip():
        return configured, "database_url in the configuration file"
    if any(os.environ.get(name) for name in LIBPQ_ENVIRONMENT):
        return "", "libpq's environment (" + ", ".join(LIBPQ_ENVIRONMENT) + ")"
    return None, "nowhere"


# Connection options libpq reads as whole numbers, and only when it connects: refused here instead.
_NUMERIC_OPTIONS = ("connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                    "tcp_user_timeout")
_ENCODE = "percent-encode @ : / ? # in the password (%40 %3A %2F %3F %23)"


def check_database_url(url: str, source: str) -> None:
    """ConfigError naming ``source`` and the part that is wrong; no part of the URL is ever quoted, since a
    password with a character it should have encoded ends up in the host, the port or an option."""
    if "://" in url and url.split("://", 1)[1].split("?", 1)[0].count("@") > 1:
        raise ConfigError(f"the database URL from {source} has more than one @ before its host: {_ENCODE}")
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as error:
        option = re.search(r'(?:option|parameter) "(\w+)"', str(error))
        what = f"its option {option[1]} is malformed" if option else "it cannot be parsed"
        raise ConfigError(f"the database URL from {source}: {what}; write it as postgresql://user:password@host:5432/"
                          f"dbname?option=value, and {_ENCODE}") from None
    for port in str(params.get("port") or "5432").split(","):
        if not (port.isdigit() and 0 < int(port) < 65536):
            raise ConfigError(f"the database URL from {source}: its port is not a number from 1 to 65535; {_ENCODE}")
    for name in _NUMERIC_OPTIONS:
        if name in params and not str(params[name]).strip().isdigit():
            raise ConfigError(f"the database URL from {source}: {name} must be a whole number, got"
                              f" {str(params[name])[:20]!r}")


