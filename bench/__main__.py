"""``python -m bench``: batched cleanup against the single DELETE, with and without application load.

Prints progress as it goes, then the tables, one verdict line per target and, last, a JSON summary on one
line. Exits 0 when the benchmark ran, whatever the verdicts; non-zero only when it could not run.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bench import report
from bench.database import GUARD_BAND, benchmark_server
from bench.suite import Options, run_variants
from jobs.cleanup_old_events import CleanupSettings


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
        description="Benchmark maintainer's batched cleanup against the guide's single DELETE (issue 6).",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="synthetic events (default 1000000)")
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
    if args.events < 1000 or args.runs < 1 or args.app_clients < 1 or args.app_rate <= 0:
        _parser().error("--events must be at least 1000; --runs, --app-clients and --app-rate positive")
    options = Options(args.events, args.batch_sizes, args.runs, args.app_clients, args.app_rate, dict(args.set))
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {message}", flush=True)

    machine = report.machine()
    progress(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, {machine['platform']}")
    with benchmark_server(args.database_url) as server:
        settings = server.settings()
        progress("server: " + ", ".join(f"{name}={value}" for name, value in settings.items()))
        progress(f"building the template: {options.events:,} synthetic events...")
        template = server.build_template(options.events)
        try:
            progress(f"template ready in {template.seconds:.1f} s: {template.eligible:,} of {template.events:,}"
                     f" events eligible at cutoff {template.cutoff} (guard band {GUARD_BAND})")
            runs = []
            for index in range(options.runs):
                progress(f"run {index + 1} of {options.runs}")
                runs.append(run_variants(server, template, options, progress))
        finally:
            server.drop(template.name)

    summary = report.summarize(runs, events=options.events, batch_sizes=options.batch_sizes, extra={
        "eligible_at_build": template.eligible, "app_clients": options.app_clients, "app_rate": options.app_rate,
        "cleanup_settings": options.cleanup_settings,
        "machine": machine, "server": settings, "elapsed_s": round(time.monotonic() - started, 1),
    })
    if args.details:
        with Path(args.details).open("w") as details:
            json.dump({"summary": summary, "runs": [report.batch_details(run) for run in runs]}, details, indent=1)
        progress(f"per-batch details written to {args.details}")
    medians = f" (medians of {options.runs} runs)" if options.runs > 1 else ""
    print(f"\nCleanup of {options.events:,} events{medians}:\n")
    print(report.cleanup_table(summary))
    print(f"\nApplication load ({options.app_clients} clients, {options.app_rate:g} inserts + reads per second)"
          f"{medians}:\n")
    print(report.app_table(summary))
    print()
    print("\n".join(report.verdict_lines(summary)))
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
