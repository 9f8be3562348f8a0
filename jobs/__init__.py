"""The registry: every built-in job by name, and the settings model that holds their settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from jobs import cleanup_old_events
from jobs.cleanup_old_events import CleanupSettings
from maintainer.errors import ConfigError
from maintainer.job import Job

REGISTRY: dict[str, Job] = {job.name: job for job in (cleanup_old_events.JOB,)}


class JobsSettings(BaseModel):
    """``[jobs.<job_name>]`` in TOML; one field per registered job, named by ``Job.settings_key``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cleanup_old_events: CleanupSettings = CleanupSettings()


def get(name: str) -> Job:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown job {name!r}; valid jobs: {', '.join(REGISTRY)}") from None
