"""The steady state: the nightly cleanup once the backlog is gone, at two sizes with the same events a day.

Each size gets its own template: the synthetic data over ``days`` (the larger size has four times the
events over four times the days: four times the pile the rule keeps, the same number of events a day
becoming eligible), the backlog deleted with the guide's statement, then (unless told to keep the schema as
it is) the indexes ``maintainer check`` advises for the cleanup, created with the statements it prints, as
an operator would at the cut-over; then maintainer's first run (it finds nothing, and records its cutoff in
the run history as every run does), then ``VACUUM ANALYZE``. Then, for each retention in
``STEADY_RETENTIONS`` (nothing newly eligible, a few days' worth, about 2% of a year) and each on a fresh
copy of it:

(a) ``single_delete``: the guide's statement;
(b) ``nightly``: ``maintainer run-once cleanup-old-events``, as the nightly run after that first one;
(c) ``full_pass``: the same with ``full_pass_every = 0s``, as the weekly run that looks at every candidate
    session (not a target: its cost follows the sessions the table holds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from bench.database import STEADY_RETENTIONS, Server, Template
from bench.variants import SINGLE_DELETE, CleanupOutcome, maintainer_cleanup, run_maintainer, single_delete

Progress = Callable[[str], None]
STEADY_VARIANTS = ("single_delete", "nightly", "full_pass")


@dataclass
class SteadyResults:
    """One run of the steady scenario at one size: each variant at each retention."""

    events: int
    backlog: int  # events the guide's statement deleted while the template was made
    cleanups: dict[tuple[int, str], CleanupOutcome] = field(default_factory=dict)  # (retention, variant)


def build_steady_template(
    server: Server, events: int, days: int, time_ordered: bool, content_bytes: int, advised_indexes: bool,
    progress: Progress,
) -> tuple[Template, int]:
    """A template in the steady state; also returns how many events the backlog held."""
    started = time.monotonic()
    built = server.build_template(events, days, suffix=f"steady_{events}", time_ordered=time_ordered,
                                  content_bytes=content_bytes)
    url = server.url_for(built.name)
    with psycopg.connect(url, autocommit=True) as conn:
        backlog = conn.execute(SINGLE_DELETE, {"cutoff": built.cutoff}).rowcount
        for statement in advised_index_statements(url) if advised_indexes else []:
            conn.execute(statement)
            progress(f"as maintainer check advises: {statement}")
    run_maintainer(url, ["run-once", "cleanup-old-events"], {})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    progress(f"steady template of {events:,} events over {days} days ready in {time.monotonic() - started:.1f} s:"
             f" the guide's statement deleted a backlog of {backlog:,}, then maintainer's first run")
    return built, backlog


def advised_index_statements(url: str) -> list[str]:
    """The CREATE INDEX statements ``maintainer check`` prints for the cleanup on this database."""
    checks = json.loads(run_maintainer(url, ["check", "--format", "json"], {}).stdout)["checks"]
    return [check["fix"] for check in checks
            if check["job"] == "cleanup-old-events" and (check["fix"] or "").startswith("CREATE INDEX")]


def run_steady(server: Server, template: Template, backlog: int, progress: Progress) -> SteadyResults:
    results = SteadyResults(template.events, backlog)
    for retention_days in STEADY_RETENTIONS:
        settings = {"retention_days": str(retention_days)}
        plan: dict[str, Callable[[str], CleanupOutcome]] = {
            "single_delete": lambda url, days=retention_days: single_delete(url, template, days),
            "nightly": lambda url, job=settings: maintainer_cleanup(url, template, job),
            "full_pass": lambda url, job=settings: maintainer_cleanup(url, template, job | {"full_pass_every": "0s"}),
        }
        for variant, cleanup in plan.items():
            with server.fresh_copy(template, f"steady_{variant}") as url:
                results.cleanups[retention_days, variant] = outcome = cleanup(url)
            path = f", path {outcome.path}" if outcome.path else ""
            progress(f"{template.events:,} events, retention {retention_days} days, {variant}:"
                     f" {outcome.rows_deleted:,} rows in {outcome.seconds * 1000:.0f} ms{path}")
    return results


def steady_rows(run: SteadyResults) -> dict[str, dict[str, float | bool | str | None]]:
    """Per retention: rows, times, and the single DELETE's time over each maintainer variant's."""
    rows = {}
    for retention_days in STEADY_RETENTIONS:
        reference = run.cleanups[retention_days, "single_delete"]
        nightly, full = run.cleanups[retention_days, "nightly"], run.cleanups[retention_days, "full_pass"]
        rows[f"{run.events}_{retention_days}"] = {
            "events": run.events, "retention_days": retention_days, "rows_deleted": reference.rows_deleted,
            "same_rows": all(outcome.rows_deleted == reference.rows_deleted
                             and outcome.survivors == reference.survivors for outcome in (nightly, full)),
            "single_delete_s": reference.seconds, "nightly_s": nightly.seconds, "full_pass_s": full.seconds,
            "ratio_nightly": reference.seconds / nightly.seconds if nightly.seconds > 0 else None,
            "ratio_full_pass": reference.seconds / full.seconds if full.seconds > 0 else None,
            "nightly_path": nightly.path, "full_pass_path": full.path,
        }
    return rows

