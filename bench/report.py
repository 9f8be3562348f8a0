"""What the benchmark prints: Markdown tables, one verdict line per target, and the JSON summary.

With several runs every number is the median over the runs (a boolean holds only if it held in every
run). The first run's verdicts are checked on (b), maintainer with its default settings or those given
with ``--set``; its rows/s target on the lower quartile of the interleaved pairs' ratios, not on their
median. The steady state's verdicts are checked on the nightly run.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.measure import median, percentile
from bench.steady import SteadyResults, steady_rows
from bench.suite import RunResults

Row = dict[str, Any]

LABELS = {
    "single_delete": "(a) single DELETE",
    "maintainer_default": "(b) maintainer, {settings}",
    "single_delete_under_load": "(a) single DELETE, under load",
    "maintainer_default_under_load": "(b) maintainer, {settings}, under load",
    "single_delete_baseline": "application alone, just before (a)",
    "maintainer_default_baseline": "application alone, just before (b)",
    "busy_core": "one CPU core kept busy, no database work (control)",
    "during_single_delete": "during (a) single DELETE",
    "during_maintainer_default": "during (b) maintainer, {settings}",
}


def label(variant: str, settings: dict[str, str]) -> str:
    """The row's name; ``settings`` are (b)'s and (c)'s over the job's defaults (``--set``)."""
    if variant.startswith("batch_"):
        # A (c) row's own batch size wins over one given with --set.
        shown = ", ".join(f"{name}={value}" for name, value in settings.items() if name != "batch_size")
        return f"(c) maintainer, batch_size {int(variant.removeprefix('batch_')):,}" + (f", {shown}" if shown else "")
    shown = ", ".join(f"{name}={value}" for name, value in settings.items())
    return LABELS.get(variant, variant).format(settings=shown or "defaults")


def cleanup_rows(run: RunResults) -> dict[str, Row]:
    reference = run.cleanups["single_delete"]
    rows = {}
    for variant, outcome in run.cleanups.items():
        batches = asdict(outcome.batches) if outcome.batches else {}
        rows[variant] = {
            "rows_deleted": outcome.rows_deleted,
            "same_rows": outcome.rows_deleted == reference.rows_deleted and outcome.survivors == reference.survivors,
            "seconds": outcome.seconds,
            "rows_per_s": outcome.rows_per_s,
            "ratio_vs_single_delete": outcome.rows_per_s / reference.rows_per_s,
            "batches": batches.get("batches"),
            "max_batch_ms": batches.get("max_ms"),
            "p99_batch_ms": batches.get("p99_ms"),
            "first_10pct_batch_ms": batches.get("first_10pct_ms"),
            "last_10pct_batch_ms": batches.get("last_10pct_ms"),
            "flatness": batches.get("flatness"),
            "wal_mb": outcome.wal_bytes / 2**20,
            "rss_mb": outcome.rss_mb,
            "process_seconds": outcome.process_seconds,
        }
    return rows


def batch_details(run: RunResults) -> dict[str, Row]:
    return {
        variant: {"batch_ms": list(outcome.batch_ms), "batch_rows": list(outcome.batch_rows)}
        for variant, outcome in run.cleanups.items() if outcome.batch_ms
    }


# Each phase against the application alone just before it (a baseline against itself); the control ran
# just before (b).
_BASELINE_OF = {
    "single_delete": "single_delete_baseline", "maintainer_default": "maintainer_default_baseline",
    "busy_core": "maintainer_default_baseline",
}
APP_PHASES = ("single_delete_baseline", "single_delete", "maintainer_default_baseline", "busy_core",
              "maintainer_default")


def app_rows(run: RunResults) -> dict[str, Row]:
    rows = {}
    for phase in APP_PHASES:
        stats, baseline = run.app[phase], run.app[_BASELINE_OF.get(phase, phase)].p99_ms
        rows[phase] = {**asdict(stats), "p99_vs_baseline": stats.p99_ms / baseline if baseline > 0 else math.nan}
    return rows


def combine(per_run: Sequence[dict[str, Row]]) -> dict[str, Row]:
    """Medians over the runs, key by key; booleans must hold in every run; texts are listed once each."""
    combined: dict[str, Row] = {}
    for variant, first in per_run[0].items():
        combined[variant] = {}
        for key, value in first.items():
            values = [rows[variant][key] for rows in per_run]
            combined[variant][key] = (
                all(values) if isinstance(value, bool)
                else "/".join(sorted({str(v) for v in values})) if isinstance(value, str) else median(values)
            )
    return combined


def spread(values: Sequence[float]) -> dict[str, float]:
    """The median, quartiles and extremes of ``values``, nearest rank."""
    return {"samples": len(values), "min": min(values), "p25": percentile(values, 25), "median": percentile(values, 50),
            "p75": percentile(values, 75), "max": max(values)}


@dataclass(frozen=True)
class Target:
    name: str
    measured: Callable[[Row], Any]
    passes: Callable[[Any], bool]
    target: str
    shown: Callable[[Any], str]
    scenario: str = "first_run"


def _sizes(values: dict[str, float]) -> str:
    return ", ".join(f"{value:.2f} at {int(size):,}" for size, value in values.items())


TARGETS = [
    Target("same rows as (a), every variant", lambda s: s["same_rows"], bool, "true", str),
    Target("rows/s of (b) vs (a), lower quartile", lambda s: s["ratio_spread"]["p25"], lambda v: v >= 0.8,
           ">= 0.8", "{:.2f}".format),
    Target("longest batch transaction of (b)", lambda s: s["max_batch_ms"], lambda v: v <= 1000, "<= 1000 ms",
           "{:.0f} ms".format),
    Target("p99 batch transaction of (b)", lambda s: s["p99_batch_ms"], lambda v: v < 250, "< 250 ms",
           "{:.0f} ms".format),
    Target("last-10% / first-10% batch time of (b)", lambda s: s["flatness"], lambda v: v <= 1.5, "<= 1.5",
           "{:.2f}".format),
    Target("application p99 during (b) vs baseline", lambda s: s["app_p99_ratio"], lambda v: v <= 1.5, "<= 1.5",
           "{:.2f}".format),
    Target("maintainer peak RSS", lambda s: s["rss_mb"], lambda v: v < 100, "< 100 MB", "{:.1f} MB".format),
    Target("dry-run audit", lambda s: s["audit_seconds"], lambda v: v < 10, "< 10 s (at 5M events)",
           "{:.2f} s".format),
    Target("steady: same rows as (a), every variant", lambda s: s["steady_same_rows"], bool, "true", str,
           "steady"),
    Target("steady: (a) time / nightly time, worst", lambda s: s["steady_ratio_vs_single_delete"],
           lambda v: min(v.values()) >= 3, ">= 3 at each size", _sizes, "steady"),
    Target("steady: nightly time, larger / smaller size", lambda s: s["steady_growth"], lambda v: v <= 1.5,
           "<= 1.5", "{:.2f}".format, "steady"),
]


def summarize(
    runs: Sequence[RunResults], steady: Sequence[Sequence[SteadyResults]], *, events: int, batch_sizes: list[int],
    extra: dict[str, Any]
) -> dict[str, Any]:
    """``steady``: per run, the steady scenario's results at each size, the smaller first."""
    summary = {"events": events, **(_first_run(runs, batch_sizes) if runs else {}),
               **(_steady(steady) if steady else {}), **extra}
    scenarios = {"first_run"} if runs else set()
    scenarios |= {"steady"} if steady else set()
    summary["verdicts"] = {target.name: _passes(target, summary) for target in TARGETS if target.scenario in scenarios}
    summary["passed"] = all(summary["verdicts"].values())
    safe: dict[str, Any] = _json_safe(summary)
    return safe


def _steady(per_run: Sequence[Sequence[SteadyResults]]) -> dict[str, Any]:
    rows = combine([{key: row for size in run for key, row in steady_rows(size).items()} for run in per_run])
    sizes = sorted({int(row["events"]) for row in rows.values()})
    retentions = sorted({int(row["retention_days"]) for row in rows.values()}, reverse=True)

    def at(size: int, key: str) -> list[float]:
        return [rows[f"{size}_{days}"][key] for days in retentions]

    def growth(key: str) -> float:
        """The larger size's time over the smaller's, the worst retention."""
        return max(large / small for small, large in zip(at(sizes[0], key), at(sizes[-1], key), strict=True))

    return {
        "steady_ratio_vs_single_delete": {str(size): min(at(size, "ratio_nightly")) for size in sizes},
        "steady_growth": growth("nightly_s"),
        "steady_full_pass_ratio": {str(size): min(at(size, "ratio_full_pass")) for size in sizes},
        "steady_full_pass_growth": growth("full_pass_s"),
        "steady_same_rows": all(row["same_rows"] for row in rows.values()),
        "steady_backlog": {str(size.events): size.backlog for size in per_run[0]},
        "steady": rows,
    }


def _first_run(runs: Sequence[RunResults], batch_sizes: list[int]) -> dict[str, Any]:
    variants = combine([cleanup_rows(run) for run in runs])
    app = combine([app_rows(run) for run in runs])
    default = variants["maintainer_default"]
    maintainer_rss = [row["rss_mb"] for row in variants.values() if row["rss_mb"] is not None]
    ratios = spread([ratio for run in runs for ratio in run.pair_ratios])
    return {
        "runs": len(runs),
        "ratio_vs_single_delete": ratios["median"],
        "ratio_spread": ratios,
        "max_batch_ms": default["max_batch_ms"],
        "p99_batch_ms": default["p99_batch_ms"],
        "flatness": default["flatness"],
        "app_p99_ratio": app["maintainer_default"]["p99_vs_baseline"],
        "app_p99_ratio_single_delete": app["single_delete"]["p99_vs_baseline"],
        "app_p99_ratio_busy_core": app["busy_core"]["p99_vs_baseline"],
        "rss_mb": max(maintainer_rss),
        "same_rows": all(row["same_rows"] for row in variants.values()) and all(run.pairs_same_rows for run in runs),
        "rows_deleted": {variant: row["rows_deleted"] for variant, row in variants.items()},
        "audit_seconds": median(run.audit.seconds for run in runs),
        "audit_process_seconds": median(run.audit.process_seconds for run in runs),
        "audit_rss_mb": median(run.audit.rss_mb for run in runs),
        "audit_would_delete": median(run.audit.would_delete for run in runs),
        "batch_sizes": batch_sizes,
        "variants": variants,
        "app": app,
    }


def _passes(target: Target, summary: dict[str, Any]) -> bool:
    value = target.measured(summary)
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and bool(target.passes(value))


def verdict_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for target in TARGETS:
        if target.name not in summary["verdicts"]:
            continue
        value = target.measured(summary)
        shown = target.shown(value) if value is not None else "n/a"
        verdict = "PASS" if summary["verdicts"][target.name] else "FAIL"
        lines.append(f"{verdict}  {target.name:<42} {shown:>10}   target {target.target}")
    if "ratio_spread" in summary:
        ratios = summary["ratio_spread"]
        lines.append(f"note  {'rows/s of (b) vs (a), every pair':<42} {ratios['median']:>10.2f}   median of"
                     f" {ratios['samples']}; quartiles {ratios['p25']:.2f}-{ratios['p75']:.2f},"
                     f" extremes {ratios['min']:.2f}-{ratios['max']:.2f}")
        control = summary["app_p99_ratio_busy_core"]
        lines.append(f"note  {'application p99, one core kept busy (control)':<42} "
                     f"{'n/a' if control is None else f'{control:.2f}':>10}   what any busy core costs on this machine")
    if "steady_full_pass_ratio" in summary:
        lines.append(f"note  {'steady: (a) time / full pass time, worst':<42} "
                     f"{_sizes(summary['steady_full_pass_ratio'])}; larger / smaller size"
                     f" {summary['steady_full_pass_growth']:.2f}: the weekly run, not a target")
    return lines


_STEADY_COLUMNS = [
    ("events", "{:,.0f}"), ("retention days", "{:.0f}"), ("rows deleted", "{:,.0f}"), ("same rows", None),
    ("(a) single DELETE ms", "{:.0f}"), ("(b) nightly ms", "{:.0f}"), ("(a) / (b)", "{:.1f}"), ("(b) path", None),
    ("(c) full pass ms", "{:.0f}"), ("(a) / (c)", "{:.1f}"), ("(c) path", None),
]
_STEADY_KEYS = [
    "events", "retention_days", "rows_deleted", "same_rows", "single_delete_s", "nightly_s", "ratio_nightly",
    "nightly_path", "full_pass_s", "ratio_full_pass", "full_pass_path",
]


def steady_table(summary: dict[str, Any]) -> str:
    milliseconds = {"single_delete_s", "nightly_s", "full_pass_s"}
    rows = {key: {name: value * 1000 if name in milliseconds and value is not None else value
                  for name, value in row.items()} for key, row in summary["steady"].items()}
    lines = ["| " + " | ".join(title for title, _ in _STEADY_COLUMNS) + " |",
             "|" + "|".join("---" if shape is None else "---:" for _, shape in _STEADY_COLUMNS) + "|"]
    for row in rows.values():
        cells = [_cell(row.get(key), shape) for (_, shape), key in zip(_STEADY_COLUMNS, _STEADY_KEYS, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any, shape: str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    return shape.format(value) if shape else str(value)


_CLEANUP_COLUMNS = [
    ("variant", None), ("rows deleted", "{:,.0f}"), ("same rows", None), ("time s", "{:.2f}"),
    ("rows/s", "{:,.0f}"), ("vs (a)", "{:.2f}"), ("batches", "{:,.0f}"), ("max batch ms", "{:.0f}"),
    ("p99 batch ms", "{:.0f}"), ("first 10% ms", "{:.1f}"), ("last 10% ms", "{:.1f}"), ("flatness", "{:.2f}"),
    ("WAL MB", "{:.1f}"), ("peak RSS MB", "{:.1f}"), ("process s", "{:.2f}"),
]
_CLEANUP_KEYS = [
    "", "rows_deleted", "same_rows", "seconds", "rows_per_s", "ratio_vs_single_delete", "batches", "max_batch_ms",
    "p99_batch_ms", "first_10pct_batch_ms", "last_10pct_batch_ms", "flatness", "wal_mb", "rss_mb", "process_seconds",
]
_APP_COLUMNS = [
    ("phase", None), ("operations", "{:,.0f}"), ("seconds", "{:.2f}"), ("ops/s", "{:,.0f}"), ("p50 ms", "{:.2f}"),
    ("p99 ms", "{:.2f}"), ("max ms", "{:.2f}"), ("insert p99 ms", "{:.2f}"), ("read p99 ms", "{:.2f}"),
    ("p99 vs just before", "{:.2f}"),
]
_APP_KEYS = [
    "", "operations", "seconds", "ops_per_s", "p50_ms", "p99_ms", "max_ms", "insert_p99_ms", "read_p99_ms",
    "p99_vs_baseline",
]


def cleanup_table(summary: dict[str, Any]) -> str:
    return _table(_CLEANUP_COLUMNS, _CLEANUP_KEYS, summary["variants"], summary.get("cleanup_settings", {}))


# The cleanup phases are named for what ran beside the application, not as the cleanup's own rows.
_DURING = {"single_delete": "during_single_delete", "maintainer_default": "during_maintainer_default"}


def app_table(summary: dict[str, Any]) -> str:
    phases = {_DURING.get(phase, phase): summary["app"][phase] for phase in APP_PHASES}
    return _table(_APP_COLUMNS, _APP_KEYS, phases, summary.get("cleanup_settings", {}))


def _table(
    columns: list[tuple[str, str | None]], keys: list[str], rows: dict[str, Row], settings: dict[str, str]
) -> str:
    lines = ["| " + " | ".join(title for title, _ in columns) + " |",
             "|" + "|".join("---" if shape is None else "---:" for _, shape in columns) + "|"]
    for variant, row in rows.items():
        cells = [label(variant, settings)]
        cells += [_cell(row.get(key), shape) for (_, shape), key in zip(columns[1:], keys[1:], strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_gb, 1),
        "python": sys.version.split()[0],
    }


def _json_safe(value: Any) -> Any:
    """NaN and infinity become null: the summary must parse as strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value
