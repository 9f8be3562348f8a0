"""The jobs, one module each, listed once in ``JOBS``: the registry and the settings under ``[jobs]`` are
built from that tuple. ``custom_sql`` makes the jobs a configuration adds under ``[custom_jobs]``."""

from jobs import (
    cleanup_old_events,
    custom_sql,
    maintain_parlant_events,
    maintain_parlant_indexes,
    refresh_agent_analytics,
    update_statistics,
)
from maintainer.registry import Registry

JOBS = (
    cleanup_old_events.JOB,
    update_statistics.JOB,
    maintain_parlant_events.JOB,
    refresh_agent_analytics.JOB,
    maintain_parlant_indexes.JOB,
)

REGISTRY = Registry.of(JOBS, custom_settings=custom_sql.CustomSqlSettings, custom_job=custom_sql.custom_job)
