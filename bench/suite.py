"""One run of the benchmark: every variant on its own fresh copy of the template, in a fixed order.

1. the dry-run audit;
2. without load: (a) the single DELETE, (b) maintainer with its defaults, (c) maintainer with each batch size;
3. with the application load running: (a) and (b) again;
4. the application load alone, for as long as (b) took under load: the baseline.

The load runs only around a cleanup: started (and warmed up) just before, stopped right after; its numbers
count the operations that started while the cleanup itself ran.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.database import Server, Template
from bench.load import ApplicationLoad
from bench.measure import LatencyStats
from bench.variants import AuditOutcome, CleanupOutcome, dry_run_audit, maintainer_cleanup, single_delete

Progress = Callable[[str], None]
Cleanup = Callable[[str], CleanupOutcome]


@dataclass(frozen=True)
class Options:
    events: int
    batch_sizes: list[int]
    runs: int
    app_clients: int
    app_rate: float  # iterations (an insert and a read) per second, all clients together


@dataclass
class RunResults:
    audit: AuditOutcome
    cleanups: dict[str, CleanupOutcome] = field(default_factory=dict)  # by variant key, see report.LABELS
    app: dict[str, LatencyStats] = field(default_factory=dict)  # baseline, single_delete, maintainer_default


def run_variants(server: Server, template: Template, options: Options, progress: Progress) -> RunResults:
    with server.fresh_copy(template, "audit") as url:
        audit = dry_run_audit(url, template)
    progress(f"dry-run audit: {audit.seconds:.2f} s, would delete {audit.would_delete:,} events")
    results = RunResults(audit)

    plan: list[tuple[str, Cleanup]] = [
        ("single_delete", functools.partial(single_delete, template=template)),
        ("maintainer_default", functools.partial(maintainer_cleanup, template=template)),
    ]
    plan += [
        (f"batch_{size}", functools.partial(maintainer_cleanup, template=template, batch_size=size))
        for size in options.batch_sizes
    ]
    for variant, cleanup in plan:
        with server.fresh_copy(template, variant) as url:
            results.cleanups[variant] = outcome = cleanup(url)
        progress(_describe(variant, outcome))

    for variant, cleanup in plan[:2]:
        with server.fresh_copy(template, f"{variant}_under_load") as url:
            load = ApplicationLoad(url, clients=options.app_clients, rate=options.app_rate)
            load.start()
            try:
                outcome = cleanup(url)
            finally:
                load.stop()
        results.cleanups[f"{variant}_under_load"] = outcome
        results.app[variant] = stats = load.stats(*outcome.window)
        progress(_describe(f"{variant}_under_load", outcome) + f"; application p99 {stats.p99_ms:.1f} ms")

    start, end = results.cleanups["maintainer_default_under_load"].window
    with server.fresh_copy(template, "baseline") as url:
        load = ApplicationLoad(url, clients=options.app_clients, rate=options.app_rate)
        load.start()
        try:
            window_start = time.monotonic()
            time.sleep(end - start)  # the measurement itself: as long as (b) ran under load
            window_end = time.monotonic()
        finally:
            load.stop()
    results.app["baseline"] = stats = load.stats(window_start, window_end)
    progress(f"application load alone for {window_end - window_start:.1f} s: p99 {stats.p99_ms:.1f} ms")
    return results


def _describe(variant: str, outcome: CleanupOutcome) -> str:
    text = f"{variant}: {outcome.rows_deleted:,} rows in {outcome.seconds:.2f} s ({outcome.rows_per_s:,.0f} rows/s)"
    if outcome.batches:
        text += f", {outcome.batches.batches} batches, longest {outcome.batches.max_ms:.0f} ms"
    return text
