"""The registry: one tuple of jobs, no job left out of it, no name twice, and an engine that never imports a job."""

from __future__ import annotations

import ast
import importlib
import pkgutil

import pytest

import jobs
from jobs import JOBS, REGISTRY
from jobs.custom_sql import CustomSqlSettings, custom_job
from maintainer.registry import Registry
from tests.support.paths import ROOT


def test_every_job_module_is_in_the_tuple_of_jobs() -> None:
    modules = [importlib.import_module(f"jobs.{info.name}") for info in pkgutil.iter_modules(jobs.__path__)]
    defined = {module.__name__: module.JOB for module in modules if hasattr(module, "JOB")}

    assert len(defined) == len(modules) - 1, "every module but custom_sql defines a JOB"
    assert [name for name, job in defined.items() if job not in JOBS] == []
    assert list(REGISTRY.jobs) == [job.name for job in JOBS]


def test_two_jobs_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two jobs named 'cleanup-old-events'"):
        Registry.of((*JOBS, JOBS[0]), custom_settings=CustomSqlSettings, custom_job=custom_job)


def test_the_engine_never_imports_a_job_module_but_the_command_line_names_the_registry() -> None:
    importers = set()
    for path in (ROOT / "maintainer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "jobs" or name.startswith("jobs.") for name in names):
                importers.add(path.name)

    assert importers == {"cli.py"}
