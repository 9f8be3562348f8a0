"""The registry: every built-in job by name, the settings model that holds their settings, and the
custom SQL jobs a configuration adds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from jobs import (
    cleanup_old_events,
    maintain_parlant_events,
    maintain_parlant_indexes,
    refresh_agent_analytics,
    update_statistics,
)
from jobs.cleanup_old_events import CleanupSettings
from jobs.custom_sql import custom_job
from jobs.maintain_parlant_events import MaintainEventsSettings
from jobs.maintain_parlant_indexes import MaintainIndexesSettings
from jobs.refresh_agent_analytics import RefreshAnalyticsSettings
from jobs.update_statistics import UpdateStatisticsSettings
from maintainer.errors import ConfigError
from maintainer.job import Job

if TYPE_CHECKING:
    from maintainer.settings import Settings

REGISTRY: dict[str, Job] = {
    job.name: job
    for job in (
        cleanup_old_events.JOB,
        update_statistics.JOB,
        maintain_parlant_events.JOB,
        refresh_agent_analytics.JOB,
        maintain_parlant_indexes.JOB,
    )
}


class JobsSettings(BaseModel):
    """``[jobs.<job_name>]`` in TOML; one field per registered job, named by ``Job.settings_key``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cleanup_old_events: CleanupSettings = CleanupSettings()
    update_statistics: UpdateStatisticsSettings = UpdateStatisticsSettings()
    maintain_parlant_events: MaintainEventsSettings = MaintainEventsSettings()
    refresh_agent_analytics: RefreshAnalyticsSettings = RefreshAnalyticsSettings()
    maintain_parlant_indexes: MaintainIndexesSettings = MaintainIndexesSettings()


def available(settings: Settings) -> dict[str, Job]:
    """The built-in jobs, then the custom SQL jobs of this configuration."""
    custom = {name: custom_job(name, job_settings) for name, job_settings in settings.custom_jobs.items()}
    return REGISTRY | custom


def get(name: str, settings: Settings) -> Job:
    jobs = available(settings)
    try:
        return jobs[name]
    except KeyError:
        raise ConfigError(f"unknown job {name!r}; valid jobs: {', '.join(jobs)}") from None
