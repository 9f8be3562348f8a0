"""Command line: argument parsing and exit codes only.

Exit codes: 0 done, 1 a job (or a check) failed, 2 usage or configuration error, 75 another run of the
job holds its lock (EX_TEMPFAIL: try again later).
Commands that print a report (``run-once``, ``list``, ``check``, ``demo``) write it to stdout and their log lines
to stderr, so ``> audit.json`` captures the report alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import urllib.request
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

import jobs
from maintainer import __version__, logs, pg_cron
from maintainer.check import run_checks
from maintainer.db import connect
from maintainer.errors import ConfigError, MaintainerError
from maintainer.history import History
from maintainer.job import Check
from maintainer.runner import run_job, utc_now
from maintainer.schedule import next_fire_times
from maintainer.scheduler import Daemon
from maintainer.settings import Settings, load_settings


def _global_options(after_the_command: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. After it they only override: their default is
    to leave what came before alone."""
    options = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if after_the_command else None
    options.add_argument(
        "--database-url", metavar="URL", default=default,
        help="PostgreSQL URL; default $MAINTAINER_DATABASE_URL, $DATABASE_URL, the file $MAINTAINER_DATABASE_URL_FILE",
    )
    options.add_argument("--config", metavar="FILE", default=default,
                         help="a configuration file over the shipped defaults; default $MAINTAINER_CONFIG")
    return options


def _parser() -> argparse.ArgumentParser:
    connection = _global_options(after_the_command=True)
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--format", choices=["text", "json"], default="text", help="report format (default text)")

    parser = argparse.ArgumentParser(
        prog="maintainer", description="Scheduled PostgreSQL maintenance for the Parlant agent tables.",
        epilog="exit codes: 0 done, 1 job failed, 2 usage or configuration error, 75 job locked by another run",
        parents=[_global_options(after_the_command=False)],
    )
    parser.add_argument("--version", action="version", version=f"maintainer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_once = commands.add_parser(
        "run-once", parents=[connection, output], help="run one job now and exit",
        description="Run one job now. With --dry-run, report what it would do and change nothing.",
    )
    run_once.add_argument("job", help="job name, see 'maintainer list'")
    run_once.add_argument("--dry-run", action="store_true", help="report only; runs in a read-only transaction")
    commands.add_parser(
        "run", parents=[connection], help="the daemon: run every enabled job on its schedule until SIGTERM",
        description="Run every enabled job on its schedule. Logs JSON lines on stdout. SIGTERM or SIGINT:"
        " no new runs, the running job gets scheduler.shutdown_grace to finish, then exit 0.",
    )
    commands.add_parser(
        "status", parents=[connection, output], help="per job: last run, last success, last error, next run",
    )
    commands.add_parser("list", parents=[connection, output], help="list the jobs, their schedules and next runs")
    commands.add_parser(
        "healthcheck", parents=[connection],
        help="exit 0 when the local daemon's /healthz answers 200 (for a container HEALTHCHECK)",
    )
    commands.add_parser(
        "check", parents=[connection, output], help="check every enabled job's prerequisites; exit 1 if any fails",
        description="Check the connection, server version, tables, view, function, indexes and privileges"
        " every enabled job needs. Changes nothing.",
    )
    importer = commands.add_parser(
        "import-pg-cron", parents=[connection],
        help="print a configuration file made from pg_cron's jobs (cron.job) of this database",
        description="Read cron.job (and the last outcome of each job from cron.job_run_details) and print a"
        " configuration file MAINTAINER_CONFIG accepts: the guide's jobs as the built-in ones, every other job"
        " as a custom SQL job; jobs of another database or role, or with a schedule maintainer refuses, as"
        " comments (and on stderr). pg_cron shows a role only the jobs it scheduled, unless a superuser lets it read"
        " them all (the fix it prints says how).",
    )
    importer.add_argument("--format", choices=["toml", "json"], default="toml", help="output format (default toml)")
    importer.add_argument("--unschedule", action="store_true",
                          help="print the cron.unschedule() statements of exactly the jobs imported, instead")
    importer.add_argument("--apply", action="store_true",
                          help="with --unschedule: run them, in one transaction, and say what was removed")
    demo = commands.add_parser(
        "demo", parents=[connection],
        help="run the retention audit and cleanup on a throwaway embedded PostgreSQL with synthetic data",
    )
    demo.add_argument("--events", type=int, default=100_000, help="synthetic events to generate (default 100000)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    json_logs = False
    try:
        settings = load_settings(args.config, database_url=args.database_url)
        # The daemon's logs are its output; the other commands keep stdout for their report.
        stream = sys.stdout if args.command == "run" else sys.stderr
        logs.configure(settings.log_format, settings.log_level, stream=stream)
        logs.log_unhandled_exceptions()
        json_logs = settings.log_format == "json" or (settings.log_format == "auto" and not stream.isatty())
        if args.command == "run":
            settings.require_database_url()
            code = Daemon(settings).run()
            # Without waiting for the scheduler's threads: one stuck on a server that never answers (a connect,
            # a frozen backend) would hold the interpreter's exit. scheduler_stopped was the last line.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        if args.command == "healthcheck":
            return _healthcheck(settings)
        if args.command == "status":
            return _print_status(settings, args.format)
        if args.command == "run-once":
            job = jobs.get(args.job, settings)
            if not settings.job_settings(job.name).enabled:
                logs.get_logger(job=job.name).warning(
                    "disabled_job_run", reason="its enabled setting is false, and run-once runs it anyway")
            history = History(settings)  # a dry run only reads it
            run = run_job(settings, job, dry_run=args.dry_run, history=history)
            print(json.dumps(run.as_dict(), indent=2) if args.format == "json" else run.result.report)
        elif args.command == "list":
            _list_jobs(settings, args.format)
        elif args.command == "check":
            return _print_checks(run_checks(settings), args.format)
        elif args.command == "import-pg-cron":
            return _import_pg_cron(settings, args.format, unschedule=args.unschedule, apply=args.apply)
        elif args.command == "demo":
            from maintainer.demo import run_demo

            run_demo(args.events, sys.stdout)
    except MaintainerError as error:
        if json_logs:  # every line JSON; before the settings are read the log format is not known
            logs.get_logger().error("command_failed", command=args.command, exit_code=error.exit_code,
                                    error=logs.redact(str(error)))
        else:
            print(f"maintainer: {logs.redact(str(error))}", file=sys.stderr)
        return error.exit_code
    return 0


def _list_jobs(settings: Settings, output_format: str) -> None:
    now = utc_now()
    rows: list[dict[str, Any]] = []
    for job in jobs.available(settings).values():
        job_settings = settings.job_settings(job.name)
        rows.append({
            "job": job.name, "schedule": job_settings.schedule, "enabled": job_settings.enabled,
            "next_run": _next_run(settings, job.name, now), "description": job.description,
        })
    if output_format == "json":
        print(json.dumps(rows, indent=2, default=logs.json_value))
        return
    for row in rows:
        when = f"next {row['next_run']:%Y-%m-%d %H:%M %Z}" if row["next_run"] else "disabled"
        print(f"{row['job']:<26}{row['schedule']:<14}{when:<30}{row['description']}")


def _next_run(settings: Settings, name: str, now: datetime) -> datetime | None:
    return next_fire_times(settings.trigger(name), now, 1)[0] if settings.job_settings(name).enabled else None


def _healthcheck(settings: Settings) -> int:
    url = f"http://127.0.0.1:{settings.http_port}/healthz"
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via $http_proxy
    try:
        with local.open(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"maintainer: {url}: {error}", file=sys.stderr)
        return 1


def _print_status(settings: Settings, output_format: str) -> int:
    """Last run, last success, last error and next run of every job, from the run history: what is known
    on day one too (no history yet, or history off), exit 0; exit 1 only when the database cannot be read."""
    last_runs: dict[str, dict[str, Any]] = {}
    history = "recorded"
    if not settings.history.enabled:
        history = "off (history.enabled = false): no runs are recorded"
    else:
        try:
            last_runs = History(settings).last_runs()
        except psycopg.errors.UndefinedTable:
            history = f"empty: no run recorded yet ({settings.history.table} does not exist)"
        except psycopg.Error as error:
            print(f"maintainer: cannot read the run history ({settings.history.table}):"
                  f" {logs.redact(' '.join((error.diag.message_primary or str(error)).split()))}", file=sys.stderr)
            return 1
    now = utc_now()
    rows = []
    empty = dict.fromkeys(("last_run_at", "last_status", "last_success_at", "last_error_at", "last_error"))
    for name in jobs.available(settings):
        rows.append({"job": name, "enabled": settings.job_settings(name).enabled, **last_runs.get(name, empty),
                     "next_run_at": _next_run(settings, name, now)})
    if output_format == "json":
        print(json.dumps({"history": history, "jobs": rows}, indent=2, default=logs.json_value))
        return 0
    print(f"run history: {history}")
    for row in rows:
        def when(key: str, row: dict[str, Any] = row) -> str:
            return f"{row[key]:%Y-%m-%d %H:%M}" if row[key] else "never"
        line = (f"{row['job']:<26}last run {when('last_run_at')} ({row['last_status'] or '-'}), last success"
                f" {when('last_success_at')}, next {when('next_run_at') if row['enabled'] else 'disabled'}")
        if row["last_error"]:
            line += f"\n{'':<26}last error {when('last_error_at')}: {row['last_error']}"
        print(line)
    return 0


def _import_pg_cron(settings: Settings, output_format: str, *, unschedule: bool, apply: bool) -> int:
    if apply and not unschedule:
        raise ConfigError("--apply goes with --unschedule: nothing is unscheduled without both")
    log = logs.get_logger()
    try:
        conn = connect(settings, "import-pg-cron", lock_timeout=timedelta(seconds=5),
                       statement_timeout=timedelta(seconds=30), autocommit=False)
    except psycopg.Error as error:
        raise MaintainerError(f"cannot connect to read pg_cron's jobs: {error}") from error
    with conn:
        cron = pg_cron.read_jobs(conn)
        blind_spot = cron.blind_spot(conn.info.user)
        if cron.visibility == "not installed":
            raise MaintainerError(f"pg_cron is not installed in database {conn.info.dbname} (no cron.job)")
        if cron.visibility == "unreadable" and blind_spot:
            raise MaintainerError(f"{blind_spot[0]}; fix: {blind_spot[1]}")
        if blind_spot:
            log.warning("pg_cron_unchecked", reason=blind_spot[0], fix=blind_spot[1])
        plan = pg_cron.plan_import(cron.jobs, settings, conn.info.dbname, conn.info.user)
        for entry in plan:
            if entry.kind == "not imported":
                log.warning("pg_cron_job_not_imported", pg_cron_jobid=entry.cron.jobid,
                            pg_cron_jobname=entry.cron.jobname, reason=entry.reason)
        if not unschedule:
            if output_format == "json":
                print(json.dumps(pg_cron.as_json(plan, cron, conn.info.dbname), indent=2))
            else:
                print(pg_cron.render_toml(plan, cron, conn.info.dbname, utc_now(), blind_spot and blind_spot[0]),
                      end="")
            return 0
        statements = pg_cron.unschedule_statements(plan)
        if not apply:
            print("\n".join(statement for _, statement in statements))
            return 0
        try:
            with conn.transaction():
                for jobid, _ in statements:
                    conn.execute("SELECT cron.unschedule(%s)", (jobid,))
        except psycopg.Error as error:
            raise MaintainerError(
                f"nothing was unscheduled (one transaction): cron.unschedule() failed: {error} (SQLSTATE"
                f" {error.sqlstate}); fix: run --apply as the role that scheduled the jobs, or as a superuser"
            ) from error
        for entry in plan:
            if entry.kind != "not imported":
                print(f"unscheduled pg_cron job {entry.cron.jobid} ({entry.cron.jobname or 'no name'}), now"
                      f" maintainer's {entry.job}")
    return 0


def _print_checks(checks: list[Check], output_format: str) -> int:
    failed = [check for check in checks if not check.ok]
    if output_format == "json":
        print(json.dumps({"ok": not failed, "checks": [dataclasses.asdict(check) for check in checks]}, indent=2))
    else:
        for check in checks:
            verdict = "FAIL" if not check.ok else "warn" if check.warning else "ok"
            print(f"{verdict:<6}{check.job:<26}{check.subject}: {check.detail}")
            if check.fix:
                print(f"{'':<32}fix: {check.fix}")
    return 1 if failed else 0
