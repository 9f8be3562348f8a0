"""What the system catalogs say about the objects the jobs maintain: existence, privileges, statistics, health.

Jobs call these before they act (so a missing privilege is an error naming its fix, not a WARNING the
server prints while skipping the table), in their dry runs, and in ``maintainer check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from maintainer.db import sql_file, table
from maintainer.errors import JobFailed
from maintainer.job import Check

Conn = psycopg.Connection[Any]
PARLANT_TABLES = ("parlant_agent", "parlant_session", "parlant_event")
MAINTAIN_PRIVILEGE_SINCE = 170000  # PostgreSQL 17 added the MAINTAIN privilege and the pg_maintain role


def quoted(conn: Conn, name: str) -> str:
    return table(name).as_string(conn)


def missing(conn: Conn, names: list[str]) -> list[str]:
    """The configured relations (tables, views, indexes) that do not exist."""
    query = "SELECT to_regclass(%s)"
    return [name for name in names if conn.execute(query, (quoted(conn, name),)).fetchone() == (None,)]


def resolved(conn: Conn, names: list[str]) -> dict[str, str | None]:
    """Relation names as a statement writes them (folded to lower case unless quoted, on the search path), as
    ``schema.name`` the other functions here take; None for those that do not exist."""
    found: dict[str, str | None] = {}
    for name in names:
        row = conn.execute("SELECT n.nspname || '.' || c.relname FROM pg_class AS c"
                           " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
                           (name,)).fetchone()
        found[name] = row[0] if row else None
    return found


def lacking_maintain(conn: Conn, names: list[str], *, owner_only: bool) -> list[str]:
    """The relations the connected role may not maintain.

    VACUUM and ANALYZE need ownership of the table or of the database (``owner_only=False``);
    REFRESH MATERIALIZED VIEW and REINDEX need ownership of the relation. From PostgreSQL 17, the
    MAINTAIN privilege (or membership of pg_maintain) allows all four.
    """
    if conn.info.server_version >= MAINTAIN_PRIVILEGE_SINCE:
        allowed = "has_table_privilege(c.oid, 'MAINTAIN')"
    elif owner_only:
        allowed = "pg_has_role(c.relowner, 'USAGE')"
    else:
        allowed = "pg_has_role(c.relowner, 'USAGE') OR (NOT c.relisshared AND pg_has_role(d.datdba, 'USAGE'))"
    # An index is maintained through its table: that is where ownership and MAINTAIN are checked.
    query = sql.SQL(
        "SELECT {allowed} FROM pg_class AS c, pg_database AS d"
        " WHERE c.oid = coalesce((SELECT indrelid FROM pg_index WHERE indexrelid = to_regclass(%(name)s)),"
        " to_regclass(%(name)s)) AND d.datname = current_database()"
    ).format(allowed=sql.SQL(allowed))  # one of the three fixed expressions above
    return [
        name for name in names if conn.execute(query, {"name": quoted(conn, name)}).fetchone() == (False,)
    ]


def maintain_fix(conn: Conn, names: list[str]) -> str:
    role = sql.Identifier(conn.info.user).as_string(conn)
    # Privileges and ownership belong to tables, not indexes: name the table an index is on.
    tables = [
        conn.execute(
            "SELECT coalesce((SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass(%s)), %s)",
            (quoted(conn, name), name),
        ).fetchone()[0]  # type: ignore[index]
        for name in names
    ]
    objects = ", ".join(dict.fromkeys(tables))
    if conn.info.server_version >= MAINTAIN_PRIVILEGE_SINCE:
        return f"GRANT MAINTAIN ON {objects} TO {role}; or GRANT pg_maintain TO {role}"
    return (
        f"connect as the owner of {objects}, or make {role} a member of the owning role"
        f" (GRANT <owner> TO {role}); PostgreSQL before 17 has no MAINTAIN privilege"
    )


def _missing_fix(job: str) -> str:
    return f"create it, or correct jobs.{job.replace('-', '_')} in the configuration"


def require_maintain(job: str, conn: Conn, names: list[str], command: str, *, owner_only: bool) -> None:
    """Fail before running ``command`` when the server would skip (or refuse) some of ``names``."""
    if absent := missing(conn, names):
        raise JobFailed(job, f"{', '.join(absent)} does not exist", sqlstate="42P01",
                        fix=_missing_fix(job))
    if lacking := lacking_maintain(conn, names, owner_only=owner_only):
        raise JobFailed(
            job, f"role may not {command} {', '.join(lacking)}", sqlstate="42501", fix=maintain_fix(conn, lacking)
        )


def maintain_checks(job: str, conn: Conn, names: list[str], command: str, *, owner_only: bool) -> list[Check]:
    """One check per relation: it exists and the role may run ``command`` on it."""
    checks = []
    for name in names:
        if missing(conn, [name]):
            checks.append(Check(job, name, False, "does not exist",
                                fix=_missing_fix(job)))
        elif lacking_maintain(conn, [name], owner_only=owner_only):
            checks.append(Check(job, name, False, f"role {conn.info.user} may not {command} it",
                                fix=maintain_fix(conn, [name])))
        else:
            checks.append(Check(job, name, True, f"exists; role {conn.info.user} may {command} it"))
    return checks


def table_stats(conn: Conn, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per table: last (auto)vacuum and (auto)analyze times, live and dead tuples, changes since analyze."""
    with conn.cursor(row_factory=dict_row) as cursor:
        stats = {}
        for name in names:
            cursor.execute(
                "SELECT last_vacuum, last_autovacuum, last_analyze, last_autoanalyze, n_live_tup, n_dead_tup,"
                " n_mod_since_analyze FROM pg_stat_all_tables WHERE relid = to_regclass(%s)",
                (quoted(conn, name),),
            )
            stats[name] = {key: _jsonable(value) for key, value in (cursor.fetchone() or {}).items()}
    return stats


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def invalid_indexes(conn: Conn, table_prefix: str) -> list[tuple[str, str]]:
    """(index, table) of every invalid index on tables whose name starts with ``table_prefix``."""
    rows = conn.execute(
        "SELECT i.indexrelid::regclass::text, i.indrelid::regclass::text FROM pg_index AS i"
        " JOIN pg_class AS t ON t.oid = i.indrelid"
        " WHERE NOT i.indisvalid AND starts_with(t.relname, %s) ORDER BY 1",
        (table_prefix,),
    ).fetchall()
    return [(index, table_name) for index, table_name in rows]


def duplicates_query(conn: Conn, index: str) -> str | None:
    """For a unique index: the query that lists the rows its key repeats (a rebuild fails on them with
    SQLSTATE 23505 until they are gone). None for an index that is not unique."""
    row = conn.execute(
        "SELECT i.indrelid::regclass::text, ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)"
        "  FROM generate_series(1, i.indnkeyatts) AS k) FROM pg_index AS i"
        " WHERE i.indexrelid = to_regclass(%s) AND i.indisunique",
        (quoted(conn, index),),
    ).fetchone()
    if row is None:
        return None
    table_name, columns = row[0], ", ".join(row[1])
    # Text for the operator to run, never run here.
    return f"SELECT {columns}, count(*) FROM {table_name} GROUP BY {columns} HAVING count(*) > 1"  # noqa: S608


def is_reindex_leftover(index: str) -> bool:
    """A failed REINDEX CONCURRENTLY leaves ``<index>_ccnew`` (or ``_ccold``); rebuilding it would duplicate."""
    stem = index.rstrip("0123456789")
    return stem.endswith(("_ccnew", "_ccold"))


@dataclass(frozen=True)
class MatviewState:
    populated: bool
    unique_index: str | None  # one usable by REFRESH ... CONCURRENTLY: unique, valid, no WHERE, no expressions
    key_candidates: list[str]  # columns that look like the view's key, for the suggested CREATE UNIQUE INDEX


def matview_state(conn: Conn, name: str) -> MatviewState | None:
    row = conn.execute(
        "SELECT c.relispopulated,"
        " (SELECT i.indexrelid::regclass::text FROM pg_index AS i WHERE i.indrelid = c.oid AND i.indisunique"
        "  AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL LIMIT 1),"
        " ARRAY(SELECT a.attname::text FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attnum > 0"
        "  AND NOT a.attisdropped AND (a.attname LIKE '%%\\_id' OR a.atttypid IN ('date'::regtype,"
        "  'timestamp'::regtype, 'timestamptz'::regtype)) ORDER BY a.attnum)"
        " FROM pg_class AS c WHERE c.oid = to_regclass(%s) AND c.relkind = 'm'",
        (quoted(conn, name),),
    ).fetchone()
    if row is None:
        return None
    populated, unique_index, key_candidates = row
    return MatviewState(populated, unique_index, key_candidates)


@dataclass(frozen=True)
class FunctionState:
    executable: bool  # the role has EXECUTE
    security_definer: bool  # runs with its owner's privileges rather than the caller's
    definition: str  # its CREATE FUNCTION statement


def function_state(conn: Conn, name: str) -> FunctionState | None:
    """``name()``, taking no arguments: None when it does not exist."""
    signature = sql.SQL("{}()").format(table(name)).as_string(conn)
    row = conn.execute(
        "SELECT has_function_privilege(p.oid, 'EXECUTE'), p.prosecdef, pg_get_functiondef(p.oid) FROM pg_proc AS p"
        " WHERE p.oid = to_regprocedure(%s)",
        (signature,),
    ).fetchone()
    return FunctionState(*row) if row else None


_INDEXES_LEADING_WITH = sql_file("maintainer", "indexes_leading_with.sql")


@dataclass(frozen=True)
class LeadingIndex:
    name: str
    columns: tuple[str, ...]  # its key columns in order, then any INCLUDE columns

    def holds(self, columns: list[str]) -> bool:
        """Every one of ``columns`` is in the index: a query of only those can read the index alone."""
        return set(columns) <= set(self.columns)


def indexes_leading_with(conn: Conn, name: str, columns: list[str]) -> dict[str, LeadingIndex | None]:
    """Per column: a valid, whole-table btree index on ``name`` whose first column it is (one that finds the
    rows of a value, or a range of values, without reading the table), or None. Of several, the one that holds
    most of the other ``columns``, then the widest."""
    rows = conn.execute(_INDEXES_LEADING_WITH, {"columns": columns, "table": quoted(conn, name)}).fetchall()
    return {str(column): LeadingIndex(index, tuple(found)) if index else None for column, index, found in rows}
