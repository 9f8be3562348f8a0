"""The shipped Prometheus rules, run by a real promtool against series as Prometheus stores them after
scraping two daemons: with the scrape target's own job and instance labels beside maintenance_job.

Each alert must fire once per maintenance job (not once per pod, not folded into one), name that job in
its labels and summary, and stay silent when nothing is wrong.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import jobs
from maintainer.metrics import REGISTRY
from tests.support.paths import ROOT
from tests.support.tools import require_tool

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOBS = [job.name for job in jobs.REGISTRY.jobs.values()]
PODS = ("10.0.0.1:9477", "10.0.0.2:9477")
DAY = 86400


def series(metric: str, values: str, **labels: str) -> list[dict[str, str]]:
    """The metric as each of the two scraped pods exposes it, with the labels Prometheus adds."""
    return [{"series": metric + "{" + ",".join(f'{key}="{value}"' for key, value in
                                               {"job": "maintainer-pods", "instance": pod, **labels}.items()) + "}",
             "values": values} for pod in PODS]


def per_job(metric: str, values: str, **labels: str) -> list[dict[str, str]]:
    return [entry for job in JOBS for entry in series(metric, values, maintenance_job=job, **labels)]


def rule(name: str) -> dict[str, Any]:
    document = yaml.safe_load(ALERTS.read_text())
    return next(rule for group in document["groups"] for rule in group["rules"] if rule["alert"] == name)


def once_per_job(name: str) -> list[dict[str, Any]]:
    """What promtool must see: one alert per maintenance job, its summary naming the job."""
    shipped = rule(name)
    return [{
        "exp_labels": {**shipped["labels"], "maintenance_job": job},
        "exp_annotations": {key: text.replace("{{ $labels.maintenance_job }}", job)
                            for key, text in shipped["annotations"].items()},
    } for job in JOBS]


def case(name: str, input_series: list[dict[str, str]], eval_time: str, fires: bool) -> dict[str, Any]:
    return {"interval": "1m", "input_series": input_series, "alert_rule_test": [
        {"eval_time": eval_time, "alertname": name, "exp_alerts": once_per_job(name) if fires else []}]}


def interval_series() -> list[dict[str, str]]:
    return per_job("maintainer_job_interval_seconds", f"{DAY}x{THREE_DAYS}")


THREE_DAYS = 3 * 24 * 60  # samples a minute apart: a series must have one in the 5 minutes before each evaluation


CASES = {
    "a failed run on either pod": case(
        "MaintainerJobFailed", per_job("maintainer_runs_total", "0 0 1 1 1 1 1 1 1 1 1", outcome="failed"),
        "10m", fires=True),
    "no failed run": case(
        "MaintainerJobFailed", per_job("maintainer_runs_total", "3x10", outcome="failed")
        + per_job("maintainer_runs_total", "0+1x10", outcome="succeeded"), "10m", fires=False),
    "overdue on both pods": case(
        "MaintainerJobOverdue", per_job("maintainer_job_overdue", "1x10"), "10m", fires=True),
    "not overdue": case("MaintainerJobOverdue", per_job("maintainer_job_overdue", "0x10"), "10m", fires=False),
    # Prometheus's clock starts at 0 in a test: "3d" is three days after a time of 0.
    "the last success three days ago": case(
        "MaintainerJobStale", interval_series()
        + per_job("maintainer_last_success_timestamp_seconds", f"60x{THREE_DAYS}")
        + series("maintainer_start_timestamp_seconds", f"0x{THREE_DAYS}"), "3d", fires=True),
    "never succeeded, the oldest replica started three days ago": case(
        "MaintainerJobStale", interval_series()
        + per_job("maintainer_last_success_timestamp_seconds", f"0x{THREE_DAYS}")
        + series("maintainer_start_timestamp_seconds", f"0x{THREE_DAYS}"), "3d", fires=True),
    "never succeeded, deployed an hour ago": case(
        "MaintainerJobStale", interval_series()
        + per_job("maintainer_last_success_timestamp_seconds", f"0x{THREE_DAYS}")
        + series("maintainer_start_timestamp_seconds", f"{3 * DAY - 3600}x{THREE_DAYS}"), "3d", fires=False),
    "succeeded yesterday": case(
        "MaintainerJobStale", interval_series()
        + per_job("maintainer_last_success_timestamp_seconds", f"{2 * DAY}x{THREE_DAYS}")
        + series("maintainer_start_timestamp_seconds", f"0x{THREE_DAYS}"), "3d", fires=False),
    "retried again and again": case(
        "MaintainerRetryingOften", per_job("maintainer_retries_total", "0+1x60"), "60m", fires=True),
    "retried twice": case(
        "MaintainerRetryingOften", per_job("maintainer_retries_total", "0 1 2x58"), "60m", fires=False),
    "a run dropped while the last one ran": case(
        "MaintainerRunsDropped", per_job("maintainer_skips_total", "0 0 1x58", reason="still_running"),
        "60m", fires=True),
    "runs skipped for another replica's lock": case(
        "MaintainerRunsDropped", per_job("maintainer_skips_total", "0+1x60", reason="lock_held")
        + per_job("maintainer_skips_total", "0x60", reason="still_running"), "60m", fires=False),
    "pg_cron still scheduling the work": case(
        "MaintainerPgCronOverlap", per_job("maintainer_pg_cron_overlap", "1x30"), "30m", fires=True),
    "pg_cron's job unscheduled": case(
        "MaintainerPgCronOverlap", per_job("maintainer_pg_cron_overlap", "1x10 0x20"), "30m", fires=False),
}


def heartbeat_case(values: str | None, fires: bool) -> dict[str, Any]:
    shipped = rule("MaintainerHeartbeatMissing")
    expected = [{"exp_labels": shipped["labels"], "exp_annotations": shipped["annotations"]}] if fires else []
    return {"interval": "1m",
            "input_series": series("maintainer_heartbeat_timestamp_seconds", values) if values else [],
            "alert_rule_test": [{"eval_time": "30m", "alertname": "MaintainerHeartbeatMissing",
                                 "exp_alerts": expected}]}


HEARTBEAT_CASES = {
    "no heartbeat for 20 minutes": heartbeat_case("0+60x10 600x20", fires=True),
    "a heartbeat every minute": heartbeat_case("0+60x40", fires=False),
    "no maintainer scraped at all": heartbeat_case(None, fires=True),
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool", "prometheus")


def run_promtool_tests(promtool: str, tests: list[dict[str, Any]], folder: Path) -> subprocess.CompletedProcess[str]:
    test_file = folder / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("name", [*CASES, *HEARTBEAT_CASES])
def test_each_alert_fires_once_per_maintenance_job_naming_it_or_stays_silent(
    name: str, promtool: str, tmp_path: Path
) -> None:
    result = run_promtool_tests(promtool, [{**CASES, **HEARTBEAT_CASES}[name]], tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_rule_grouping_by_the_scrape_targets_job_label_is_caught(promtool: str, tmp_path: Path) -> None:
    # The rules as they were: Prometheus had renamed their label to exported_job, and max by (job) folded
    # every maintenance job into one alert. The same test must fail on them.
    old = ALERTS.read_text().replace("by (maintenance_job)", "by (job)")
    rules = tmp_path / "alerts.yml"
    rules.write_text(old)
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m",
                                         "tests": [CASES["overdue on both pods"]]}))

    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=60, check=False)

    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


DASHBOARD = ROOT / "deploy" / "grafana" / "maintainer.json"
# Grafana fills these in before it queries; promtool needs a duration in their place.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1d", "$__interval": "1m"}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def test_the_dashboard_shows_what_operators_watch_from_metrics_the_daemon_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for expr in dashboard_expressions() for name in re.findall(r"maintainer_[a-z_]+", expr)}

    assert dashboard["uid"] == "maintainer"
    assert all(panel["targets"] and panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
    assert used == {
        "maintainer_runs_total", "maintainer_run_duration_seconds_bucket", "maintainer_rows_deleted_total",
        "maintainer_retries_total", "maintainer_skips_total", "maintainer_job_overdue",
        "maintainer_last_success_timestamp_seconds", "maintainer_heartbeat_timestamp_seconds",
    }
    exposed = {family.name for family in REGISTRY.collect()}
    assert {name.removesuffix("_total").removesuffix("_bucket") for name in used} <= exposed


def test_every_promql_expression_of_the_dashboard_and_the_rules_parses(promtool: str, tmp_path: Path) -> None:
    expressions = dashboard_expressions() + rule_expressions()
    for variable, duration in GRAFANA_VARIABLES.items():
        expressions = [expr.replace(variable, duration) for expr in expressions]
    rules = tmp_path / "expressions.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "every-expression", "rules": [
        {"record": f"maintainer:expression_{index}", "expr": expr} for index, expr in enumerate(expressions)]}]}))
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": [
        {"record": "maintainer:broken", "expr": expressions[0] + ")"}]}]}))

    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60,
                             check=False)
    refused = subprocess.run([promtool, "check", "rules", str(broken)], capture_output=True, text=True, timeout=60,
                             check=False)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout
    assert refused.returncode != 0
