"""One run of the benchmark: every variant on its own fresh copy of the template, in a fixed order.

1. the dry-run audit;
2. without load: (a) the single DELETE and (b) maintainer with its defaults (or ``--set``), alternated
   ``pairs`` times (each pair's ratio is one sample of the rows/s target: interleaved, the machine's drift
   falls on both), then (c) maintainer with each batch size;
3. with the application load running, on a fresh copy each: (a), then (b), each right after its baseline.

A phase under load starts the load (and warms it up), measures the application alone for as long as the
same cleanup took without load and at least MIN_BASELINE_SECONDS (its baseline), then, before (b) only, as
long again with one CPU core kept busy by a process that does no database work (the control: what any
busy core costs the application on this machine), then runs the cleanup and stops the load. A baseline taken on the same
database, connections and caches, seconds before the cleanup, cancels most of the machine's drift.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.database import Server, Template
from bench.load import ApplicationLoad
from bench.measure import LatencyStats
from bench.variants import AuditOutcome, CleanupOutcome, dry_run_audit, maintainer_cleanup, single_delete

Progress = Callable[[str], None]
Cleanup = Callable[[str], CleanupOutcome]
MIN_BASELINE_SECONDS = 10.0  # 4,000 operations at the default rate: a p99 is then the 40th slowest


@dataclass(frozen=True)
class Options:
    events: int
    batch_sizes: list[int]
    runs: int
    pairs: int  # (a) and (b) alternated this many times in each run
    app_clients: int
    app_rate: float  # iterations (an insert and a read) per second, all clients together
    cleanup_settings: dict[str, str] = field(default_factory=dict)  # over the job's defaults, for (b) and (c)


@dataclass
class RunResults:
    audit: AuditOutcome
    cleanups: dict[str, CleanupOutcome] = field(default_factory=dict)  # by variant key, see report.LABELS
    # (b)'s rows/s over (a)'s, for each interleaved pair: the first pair's outcomes are (a) and (b) in cleanups
    pair_ratios: list[float] = field(default_factory=list)
    pairs_same_rows: bool = True  # every pair's (b) deleted (a)'s rows
    # single_delete, maintainer_default, busy_core, and each phase's <phase>_baseline
    app: dict[str, LatencyStats] = field(default_factory=dict)


def run_variants(server: Server, template: Template, options: Options, progress: Progress) -> RunResults:
    with server.fresh_copy(template, "audit") as url:
        audit = dry_run_audit(url, template)
    progress(f"dry-run audit: {audit.seconds:.2f} s, would delete {audit.would_delete:,} events")
    results = RunResults(audit)

    plan: list[tuple[str, Cleanup]] = [
        ("single_delete", functools.partial(single_delete, template=template)),
        ("maintainer_default", functools.partial(
            maintainer_cleanup, template=template, job_settings=options.cleanup_settings)),
    ]
    plan += [
        (f"batch_{size}", functools.partial(
            maintainer_cleanup, template=template, job_settings=options.cleanup_settings | {"batch_size": str(size)}))
        for size in options.batch_sizes
    ]
    for pair in range(options.pairs):
        outcomes = {}
        for variant, cleanup in plan[:2]:
            with server.fresh_copy(template, variant) as url:
                outcomes[variant] = outcome = cleanup(url)
            progress(_describe(variant, outcome) + f" (pair {pair + 1} of {options.pairs})")
        reference, batched = outcomes["single_delete"], outcomes["maintainer_default"]
        results.pair_ratios.append(batched.rows_per_s / reference.rows_per_s)
        results.pairs_same_rows &= (batched.rows_deleted, batched.survivors) == (reference.rows_deleted,
                                                                                  reference.survivors)
        if pair == 0:
            results.cleanups |= outcomes
    for variant, cleanup in plan[2:]:
        with server.fresh_copy(template, variant) as url:
            results.cleanups[variant] = outcome = cleanup(url)
        progress(_describe(variant, outcome))

    for variant, cleanup in plan[:2]:
        # As long as the same cleanup took without load, and at least long enough for a p99 that is not just
        # the window's second-slowest operation.
        alone_for = max(results.cleanups[variant].seconds, MIN_BASELINE_SECONDS)
        with server.fresh_copy(template, f"{variant}_under_load") as url:
            load = ApplicationLoad(url, clients=options.app_clients, rate=options.app_rate)
            load.start()
            try:
                # The sleep is the measurement: the application alone.
                baseline = _window(time.sleep, alone_for)
                if variant == "maintainer_default":
                    results.app["busy_core"] = load.stats(*_window(_busy_core, alone_for))
                outcome = cleanup(url)
            finally:
                load.stop()
        results.cleanups[f"{variant}_under_load"] = outcome
        results.app[f"{variant}_baseline"] = base = load.stats(*baseline)
        results.app[variant] = stats = load.stats(*outcome.window)
        progress(_describe(f"{variant}_under_load", outcome)
                 + f"; application p99 {stats.p99_ms:.2f} ms, {base.p99_ms:.2f} ms just before"
                 f", {stats.p99_ms / base.p99_ms:.2f} times")
    return results


def _window(action: Callable[[float], None], seconds: float) -> tuple[float, float]:
    """Run ``action(seconds)``; return the ``time.monotonic()`` at its start and end."""
    started = time.monotonic()
    action(seconds)
    return started, time.monotonic()


def _busy_core(seconds: float) -> None:
    """Keep one CPU core busy for ``seconds`` from another process: no I/O, no locks, no database."""
    loop = "import time, sys\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass"
    subprocess.run([sys.executable, "-c", loop, str(seconds)], check=True, timeout=seconds + 60)


def _describe(variant: str, outcome: CleanupOutcome) -> str:
    text = f"{variant}: {outcome.rows_deleted:,} rows in {outcome.seconds:.2f} s ({outcome.rows_per_s:,.0f} rows/s)"
    if outcome.batches:
        text += f", {outcome.batches.batches} batches, longest {outcome.batches.max_ms:.0f} ms"
    return text
