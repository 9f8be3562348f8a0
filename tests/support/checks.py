"""``maintainer check`` as it prints: one line per check, maybe followed by its fix."""

from __future__ import annotations

import dataclasses
import subprocess

from tests.support.commands import maintainer

JOBS = ("cleanup-old-events", "update-statistics", "maintain-parlant-events", "refresh-agent-analytics",
        "maintain-parlant-indexes")
VIEW = "parlant_agent_analytics_daily"


@dataclasses.dataclass(frozen=True)
class Line:
    """One check as the text report prints it: ``ok    <job>  <subject>: <detail>``, then maybe ``fix: ...``."""

    status: str
    job: str
    subject: str
    detail: str
    fix: str | None = None


def report(stdout: str) -> list[Line]:
    lines: list[Line] = []
    for text in stdout.splitlines():
        if text.startswith(" "):
            assert text.lstrip().startswith("fix: "), text
            lines[-1] = dataclasses.replace(lines[-1], fix=text.lstrip().removeprefix("fix: "))
        else:
            status, job, rest = text.split(maxsplit=2)
            assert status in ("ok", "warn", "FAIL") and ": " in rest, text
            subject, detail = rest.split(": ", 1)
            lines.append(Line(status, job, subject, detail))
    return lines


def lines_of(stdout: str, job: str) -> list[Line]:
    return [line for line in report(stdout) if line.job == job]


def failures(stdout: str) -> list[Line]:
    return [line for line in report(stdout) if line.status == "FAIL"]


def check(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return maintainer("check", "--database-url", database_url, *args, **env)
