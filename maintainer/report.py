"""What the commands print on stdout, as text for people or as JSON for tools: a run's report, the job
list, the status, the checks. Rendering only: the data comes from the modules that know it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Literal

from maintainer.job import Check
from maintainer.logs import json_value
from maintainer.runner import Run
from maintainer.status import Status

Format = Literal["text", "json"]


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=json_value)


def run(finished: Run, output_format: Format) -> str:
    return _json(finished.as_dict()) if output_format == "json" else finished.result.report


def job_list(rows: list[dict[str, Any]], output_format: Format) -> str:
    if output_format == "json":
        return _json(rows)
    lines = []
    for row in rows:
        when = f"next {row['next_run']:%Y-%m-%d %H:%M %Z}" if row["next_run"] else "disabled"
        lines.append(f"{row['job']:<26}{row['schedule']:<14}{when:<30}{row['description']}")
    return "\n".join(lines)


def status(report: Status, output_format: Format) -> str:
    if output_format == "json":
        return _json({"history": report.history, "jobs": report.jobs})
    lines = [f"run history: {report.history}"]
    for row in report.jobs:
        def when(key: str, row: dict[str, Any] = row) -> str:
            return f"{row[key]:%Y-%m-%d %H:%M}" if row[key] else "never"
        lines.append(f"{row['job']:<26}last run {when('last_run_at')} ({row['last_status'] or '-'}), last success"
                     f" {when('last_success_at')}, next {when('next_run_at') if row['enabled'] else 'disabled'}")
        if row["last_error"]:
            lines.append(f"{'':<26}last error {when('last_error_at')}: {row['last_error']}")
    return "\n".join(lines)


def checks(found: list[Check], output_format: Format) -> str:
    if output_format == "json":
        return json.dumps({"ok": all(check.ok for check in found),
                           "checks": [dataclasses.asdict(check) for check in found]}, indent=2)
    lines = []
    for check in found:
        verdict = "FAIL" if not check.ok else "warn" if check.warning else "ok"
        lines.append(f"{verdict:<6}{check.job:<26}{check.subject}: {check.detail}")
        if check.fix:
            lines.append(f"{'':<32}fix: {check.fix}")
    return "\n".join(lines)
