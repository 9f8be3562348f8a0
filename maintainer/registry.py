"""Which jobs there are: the built-in ones, from one tuple, and the custom SQL jobs a configuration adds.

The registry is built where the program starts (``jobs.REGISTRY``) and reaches the engine inside the
settings: the engine never imports a job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from maintainer.errors import ConfigError
from maintainer.job import Job, JobSettings


@dataclass(frozen=True, eq=False)
class Registry:
    """The jobs a program knows.

    - ``jobs``: the built-in jobs by name, in the order they were listed;
    - ``custom_settings``: the settings model of one ``[custom_jobs.<name>]`` table;
    - ``custom_job``: makes the custom job of that name from its settings.
    """

    jobs: Mapping[str, Job[Any]]
    custom_settings: type[JobSettings]
    custom_job: Callable[[str, Any], Job[Any]]

    @classmethod
    def of(cls, jobs: Sequence[Job[Any]], custom_settings: type[JobSettings],
           custom_job: Callable[[str, Any], Job[Any]]) -> Registry:
        """The registry of ``jobs``; two jobs with one name (or one settings key) are refused."""
        seen: dict[str, str] = {}
        for job in jobs:
            for key in dict.fromkeys((job.name, job.settings_key)):
                if key in seen:
                    raise ValueError(f"two jobs named {key!r}: {seen[key]} and {job.name}")
                seen[key] = job.name
        return cls(MappingProxyType({job.name: job for job in jobs}), custom_settings, custom_job)

    def jobs_model(self) -> type[BaseModel]:
        """``[jobs.<settings_key>]``: one field per built-in job, its default the job's own defaults."""
        fields: dict[str, Any] = {job.settings_key: (job.settings_model, job.settings_model())
                                  for job in self.jobs.values()}
        return create_model("JobsSettings", __config__=ConfigDict(extra="forbid", frozen=True), **fields)

    def available(self, custom_jobs: Mapping[str, JobSettings]) -> dict[str, Job[Any]]:
        """The built-in jobs, then the custom SQL jobs of a configuration (its ``custom_jobs``)."""
        custom = {name: self.custom_job(name, job_settings) for name, job_settings in custom_jobs.items()}
        return {**self.jobs, **custom}

    def get(self, name: str, custom_jobs: Mapping[str, JobSettings]) -> Job[Any]:
        jobs = self.available(custom_jobs)
        try:
            return jobs[name]
        except KeyError:
            raise ConfigError(f"unknown job {name!r}; valid jobs: {', '.join(jobs)}") from None
