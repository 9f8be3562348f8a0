"""Custom SQL jobs as ``maintainer check`` sees them before they run: the relations a maintenance command
names and the role's privileges on them, a query's tables and functions by EXPLAIN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.checks import check, lines_of


def config_with(path: Path, **statements: str) -> str:
    lines = [f'[custom_jobs.{name}]\nschedule = "@daily"\nautocommit = true\nsql = {json.dumps(sql)}\n'
             for name, sql in statements.items()]
    path.write_text("\n".join(lines))
    return str(path)


def test_check_names_what_a_custom_job_needs_and_what_it_cannot_know(
    tmp_path: Path, database_url: str, other_role_url: str
) -> None:
    config = config_with(
        tmp_path / "custom.toml",
        vacuum_events="VACUUM (ANALYZE) parlant_event", analyze_missing="ANALYZE parlant_agent, no_such_table",
        call_missing="SELECT no_such_function()", count_events="SELECT count(*) FROM parlant_event",
        build_index="CREATE INDEX CONCURRENTLY IF NOT EXISTS e_type ON parlant_event (event_type)",
        vacuum_everything="VACUUM",
    )

    as_owner = check(database_url, MAINTAINER_CONFIG=config)
    as_other = check(other_role_url, MAINTAINER_CONFIG=config)

    def line(result: Any, job: str) -> Any:
        [found] = lines_of(result.stdout, job)
        return found

    assert line(as_owner, "vacuum_events").status == "ok"
    refused = line(as_other, "vacuum_events")
    assert refused.status == "FAIL"
    assert "may not VACUUM public.parlant_event" in refused.detail and "WARNING" in refused.detail
    assert refused.fix is not None and ("GRANT MAINTAIN ON" in refused.fix or "owner" in refused.fix)
    missing = line(as_owner, "analyze_missing")
    assert (missing.status, missing.detail) == ("FAIL", "no_such_table does not exist")
    unknown = line(as_owner, "call_missing")
    assert unknown.status == "FAIL" and "no_such_function() does not exist" in unknown.detail
    assert line(as_owner, "count_events").detail.startswith("planned with EXPLAIN")
    assert line(as_other, "count_events").status == "ok"
    assert line(as_owner, "build_index").detail == "CREATE: not checked before it runs; try it with run-once"
    assert line(as_owner, "vacuum_everything").status == "ok"  # the test's role owns its database
    everything = line(as_other, "vacuum_everything")
    assert everything.status == "FAIL" and "does not own database" in everything.detail
    assert as_other.returncode == 1
