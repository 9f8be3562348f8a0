"""``python -m bench``: the cleanup against the guide's single DELETE, in two scenarios.

- first run: a backlog of a year's events, batched cleanup against the single DELETE, with and without
  application load (bench/suite.py);
- steady state: the nightly run once the backlog is gone, at two sizes with the same events a day
  (bench/steady.py).

Prints progress as it goes, then the tables, one verdict line per target and, last, a JSON summary on one
line. Exits 0 when the benchmark ran, whatever the verdicts; non-zero only when it could not run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench import report
from bench.database import GUARD_BAND, Server, benchmark_server
from bench.steady import SteadyResults, build_steady_template, run_steady
from bench.suite import Options, Progress, RunResults, run_variants
from jobs.cleanup_old_events import CleanupSettings
from maintainer.fixture import CONTENT_BYTES


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(size < 1 or size > 100_000 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be between 1 and 100000 (the job's limits)")
    return sizes


# The settings that change how the cleanup deletes, not what: every variant must delete the rows (a) does.
# progress_every_batches is the benchmark's own (it times every batch from its log line).
SETTABLE = (
    "batch_size", "pause_between_batches", "yield_batch_size", "yield_pause", "lock_timeout", "statement_timeout",
)


def _job_setting(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` for ``--set``, checked as the job would check it."""
    name, _, value = text.partition("=")
    name = name.strip()
    if not value or name not in SETTABLE:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {', '.join(SETTABLE)}, got {text!r}")
    try:
        CleanupSettings.model_validate({name: value})
    except ValidationError as error:
        raise argparse.ArgumentTypeError(f"{name}: {error.errors()[0]['msg']}") from None
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark maintainer's cleanup against the guide's single DELETE: the first run on a backlog,"
                    " and the nightly run in the steady state.",
    )
    parser.add_argument("--scenario", choices=["all", "first-run", "steady"], default="all",
                        help="which scenarios to run (default all)")
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="synthetic events of the first run (default 1000000)")
    parser.add_argument("--steady-events", type=int, default=1_000_000,
                        help="the steady state's smaller size, over a year; the larger has four times the events over"
                             " four years (default 1000000)")
    parser.add_argument("--time-ordered", action="store_true",
                        help="store the synthetic events in the order they were created, as an application appends"
                             " them (default: session by session)")
    parser.add_argument("--content-bytes", type=int, default=CONTENT_BYTES, metavar="N",
                        help="characters of text in each synthetic event's content (default %(default)s: about 140"
                             " bytes a row in the table; each character more adds one)")
    parser.add_argument("--steady-schema", choices=["advised", "as-is"], default="advised",
                        help="steady state: first create the indexes `maintainer check` advises for the cleanup, as an"
                             " operator would (default), or keep the application's schema as it is")
    parser.add_argument("--pairs", type=int, default=3,
                        help="first run: (a) and (b) alternated this many times in each run (default 3)")
    parser.add_argument("--database-url", metavar="URL",
                        help="a server the benchmark may create databases on; default: an embedded PostgreSQL 18")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=[1000, 5000, 20000], metavar="N,N,...",
                        help="batch sizes of the (c) variants (default 1000,5000,20000)")
    parser.add_argument("--set", type=_job_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="a cleanup-old-events setting for (b) and (c), over the defaults (repeatable), e.g."
                             " pause_between_batches=10ms; the verdicts then judge these settings")
    parser.add_argument("--runs", type=int, default=1, help="repeat every variant; medians are reported (default 1)")
    parser.add_argument("--app-clients", type=int, default=4, help="application load connections (default 4)")
    parser.add_argument("--app-rate", type=float, default=200,
                        help="application iterations (insert + read) per second, all clients (default 200)")
    parser.add_argument("--details", metavar="FILE",
                        help="also write every batch's time and rows, per run and variant, to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if min(args.events, args.steady_events) < 1000 or min(args.runs, args.pairs, args.app_clients) < 1 \
            or args.app_rate <= 0 or not CONTENT_BYTES <= args.content_bytes <= 1800:
        _parser().error("--events and --steady-events must be at least 1000; --runs, --pairs, --app-clients and"
                        " --app-rate positive; --content-bytes from 32 to 1800 (wider content leaves the row for"
                        " TOAST storage)")
    options = Options(args.events, args.batch_sizes, args.runs, args.pairs, args.app_clients, args.app_rate,
                      dict(args.set))
    first_run, steady = args.scenario in ("all", "first-run"), args.scenario in ("all", "steady")
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {message}", flush=True)

    machine = report.machine()
    progress(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, {machine['platform']}")
    runs: list[RunResults] = []
    steady_runs: list[list[SteadyResults]] = []
    extra: dict[str, Any] = {}
    with benchmark_server(args.database_url) as server:
        settings = server.settings()
        progress("server: " + ", ".join(f"{name}={value}" for name, value in settings.items()))
        if first_run:
            progress(f"building the template: {options.events:,} synthetic events...")
            template = server.build_template(options.events, time_ordered=args.time_ordered,
                                             content_bytes=args.content_bytes)
            try:
                progress(f"template ready in {template.seconds:.1f} s: {template.eligible:,} of {template.events:,}"
                         f" events eligible at cutoff {template.cutoff} (guard band {GUARD_BAND})")
                extra["eligible_at_build"] = template.eligible
                for index in range(options.runs):
                    progress(f"run {index + 1} of {options.runs}")
                    runs.append(run_variants(server, template, options, progress))
            finally:
                server.drop(template.name)
        if steady:
            steady_runs = _steady_state(server, args.steady_events, options.runs, args.time_ordered,
                                        args.steady_schema == "advised", args.content_bytes, progress)

    summary = report.summarize(runs, steady_runs, events=options.events, batch_sizes=options.batch_sizes, extra={
        **extra, "app_clients": options.app_clients, "app_rate": options.app_rate,
        "cleanup_settings": options.cleanup_settings, "pairs": options.pairs, "steady_events": args.steady_events,
        "time_ordered": args.time_ordered, "content_bytes": args.content_bytes, "steady_schema": args.steady_schema,
        "machine": machine, "server": settings, "elapsed_s": round(time.monotonic() - started, 1),
    })
    if args.details:
        with Path(args.details).open("w") as details:
            json.dump({"summary": summary, "runs": [report.batch_details(run) for run in runs]}, details, indent=1)
        progress(f"per-batch details written to {args.details}")
    medians = f" (medians of {options.runs} runs)" if options.runs > 1 else ""
    if runs:
        print(f"\nFirst run: cleanup of {options.events:,} events{medians}:\n")
        print(report.cleanup_table(summary))
        print(f"\nApplication load ({options.app_clients} clients, {options.app_rate:g} inserts + reads per second)"
              f"{medians}:\n")
        print(report.app_table(summary))
    if steady_runs:
        print(f"\nSteady state: the nightly run after the backlog{medians}:\n")
        print(report.steady_table(summary))
    print()
    print("\n".join(report.verdict_lines(summary)))
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


def _steady_state(
    server: Server, events: int, runs: int, time_ordered: bool, advised_indexes: bool, content_bytes: int,
    progress: Progress,
) -> list[list[SteadyResults]]:
    """Per run, the steady scenario at ``events`` over a year and four times that over four years."""
    templates = []
    try:
        for size, days in ((events, 365), (4 * events, 4 * 365)):
            progress(f"building the steady template: {size:,} synthetic events over {days} days...")
            templates.append(build_steady_template(server, size, days, time_ordered, content_bytes, advised_indexes,
                                                   progress))
        results = []
        for index in range(runs):
            progress(f"steady state, run {index + 1} of {runs}")
            results.append([run_steady(server, template, backlog, progress) for template, backlog in templates])
        return results
    finally:
        for template, _ in templates:
            server.drop(template.name)


if __name__ == "__main__":
    raise SystemExit(main())
