"""Command line: parses the arguments, loads the settings (with the jobs of ``jobs.REGISTRY``: the one place
that names them), dispatches, and returns the exit code.

Exit codes: 0 done, 1 a job (or a check) failed, 2 usage or configuration error, 75 another run of the
job holds its lock (EX_TEMPFAIL: try again later).
Commands that print a report (``run-once``, ``list``, ``check``, ``demo``) write it to stdout and their log lines
to stderr, so ``> audit.json`` captures the report alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jobs import REGISTRY
from maintainer import __version__, endpoints, logs, report
from maintainer.check import run_checks
from maintainer.clock import utc_now
from maintainer.cron_import import import_pg_cron
from maintainer.errors import MaintainerError
from maintainer.history import History
from maintainer.runner import run_job
from maintainer.scheduler import Daemon
from maintainer.settings import Settings, load_settings
from maintainer.status import job_status, job_table


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
        settings = load_settings(REGISTRY, args.config, database_url=args.database_url)
        # The daemon's logs are its output; the other commands keep stdout for their report.
        stream = sys.stdout if args.command == "run" else sys.stderr
        logs.configure(settings.log_format, settings.log_level, stream=stream)
        logs.log_unhandled_exceptions()
        json_logs = settings.log_format == "json" or (settings.log_format == "auto" and not stream.isatty())
        return _dispatch(args, settings)
    except MaintainerError as error:
        if json_logs:  # every line JSON; before the settings are read the log format is not known
            logs.get_logger().error("command_failed", command=args.command, exit_code=error.exit_code,
                                    error=logs.redact(str(error)))
        else:
            print(f"maintainer: {logs.redact(str(error))}", file=sys.stderr)
        return error.exit_code


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run the command; its exit code. Reports go to stdout, whole."""
    if args.command == "run":
        settings.require_database_url()
        code = Daemon(settings).run()
        # Without waiting for the scheduler's threads: one stuck on a server that never answers (a connect, a
        # frozen backend) would hold the interpreter's exit. scheduler_stopped was the last line.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if args.command == "healthcheck":
        if problem := endpoints.probe_health(settings.http_port):
            print(f"maintainer: {problem}", file=sys.stderr)
            return 1
        return 0
    if args.command == "run-once":
        job = settings.job(args.job)
        if not settings.job_settings(job.name).enabled:
            logs.get_logger(job=job.name).warning(
                "disabled_job_run", reason="its enabled setting is false, and run-once runs it anyway")
        print(report.run(run_job(settings, job, dry_run=args.dry_run, history=History(settings)), args.format))
    elif args.command == "status":
        print(report.status(job_status(settings, utc_now()), args.format))
    elif args.command == "list":
        print(report.job_list(job_table(settings, utc_now()), args.format))
    elif args.command == "check":
        checks = run_checks(settings)
        print(report.checks(checks, args.format))
        return 0 if all(check.ok for check in checks) else 1
    elif args.command == "import-pg-cron":
        print(import_pg_cron(settings, args.format, unschedule=args.unschedule, apply=args.apply), end="")
    elif args.command == "demo":
        from maintainer.demo import run_demo  # the embedded server's wheel: only the demo needs it

        run_demo(REGISTRY, args.events, sys.stdout)
    return 0
