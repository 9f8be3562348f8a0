"""Settings: built-in defaults < config/maintainer.toml < --config or MAINTAINER_CONFIG < environment < CLI.

The model is composed from the jobs' registry where the program starts (:func:`load_settings`); the database
URL's own order is :func:`maintainer.database_url.database_url_source`'s.

Every setting can be overridden from the environment, nested with ``__``:
``MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS=120``. Invalid values raise :class:`ConfigError`
before any connection is made; the database URL is a secret and never appears in a message or ``repr``.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from contextvars import ContextVar
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from maintainer.database_url import URL_FILE_ENV, check_database_url, database_url_source
from maintainer.errors import ConfigError
from maintainer.job import Duration, Job, JobSettings, RelationName
from maintainer.registry import Registry
from maintainer.retry import RetrySettings
from maintainer.schedule import parse_schedule

CONFIG_ENV = "MAINTAINER_CONFIG"
_SECRET_FIELDS = {"database_url"}
_FILES: ContextVar[list[Path] | None] = ContextVar("configuration_files", default=None)  # of load_settings


def default_config_file() -> Path:
    """The shipped defaults: inside the wheel when installed, ``config/`` in a source checkout."""
    packaged = Path(__file__).parent / "_config" / "maintainer.toml"
    return packaged if packaged.exists() else Path(__file__).resolve().parent.parent / "config" / "maintainer.toml"


def _known_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone name such as UTC or Europe/Berlin") from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_known_timezone)]


class SchedulerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule_timezone: TimeZoneName = "UTC"  # the zone cron schedules are read in

    @model_validator(mode="before")
    @classmethod
    def _earlier_name(cls, data: Any) -> Any:
        # "timezone", its earlier name, still accepted: set by the operator, it wins over the shipped default.
        if isinstance(data, dict) and "timezone" in data:
            data = {**data, "schedule_timezone": data["timezone"]}
            del data["timezone"]
        return data
    heartbeat_interval: Duration = timedelta(seconds=60)
    # Kubernetes kills a pod 30 s after SIGTERM by default: finish or cancel the running job before that
    # (after the grace, up to 2 s for the cancel request and 3 s for the run to end: 25 s in all).
    shutdown_grace: Duration = timedelta(seconds=20)
    # A run missed by at most this much (the process was paused, the host slept) still happens, once.
    misfire_grace_time: Duration = timedelta(minutes=10)
    overdue_grace: Duration = timedelta(hours=1)
    overdue_check_interval: Duration = timedelta(minutes=5)


class HistorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    table: RelationName = "maintainer.run_history"
    retention: Duration = timedelta(days=90)


class Settings(BaseSettings):
    """Every setting; the model :func:`settings_model` composes from a registry adds the jobs' own."""

    model_config = SettingsConfigDict(
        env_prefix="MAINTAINER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    registry: ClassVar[Registry]

    # Where it comes from is database_url_source's decision: the environment's is not read here.
    database_url: SecretStr | None = None
    # The session TimeZone, the zone TIMESTAMP WITHOUT TIME ZONE columns are read in: by default the database's
    # own, as the application's sessions and pg_cron read them ("timezone", its earlier name, still accepted).
    session_timezone: TimeZoneName | None = Field(default=None, validation_alias=AliasChoices(
        "MAINTAINER_SESSION_TIMEZONE", "MAINTAINER_TIMEZONE", "session_timezone", "timezone"))
    connect_timeout: Duration = timedelta(seconds=10)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The daemon's /healthz, /readyz and /metrics; 0 turns the listener off.
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=9477, ge=0, le=65535)
    jobs: BaseModel  # one field per built-in job (Registry.jobs_model)
    custom_jobs: dict[str, JobSettings] = {}
    scheduler: SchedulerSettings = SchedulerSettings()
    retry: RetrySettings = RetrySettings()
    history: HistorySettings = HistorySettings()

    @field_validator("custom_jobs")
    @classmethod
    def _custom_job_names(cls, custom_jobs: dict[str, JobSettings]) -> dict[str, JobSettings]:
        for name in custom_jobs:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise ValueError(f"custom job name {name!r}: use lowercase letters, digits, - and _")
            if name in cls.registry.jobs or name.replace("_", "-") in cls.registry.jobs:
                raise ValueError(f"custom job name {name!r} is taken by a built-in job")
        return custom_jobs

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # MAINTAINER_DATABASE_URL= (a compose ${VAR} left unset) must not mean libpq's local defaults.
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = _FILES.get() or _config_files(None)
        return init_settings, _WithoutUrl(env_settings), TomlConfigSettingsSource(settings_cls, files, deep_merge=True)

    def available_jobs(self) -> dict[str, Job[Any]]:
        """The built-in jobs, then this configuration's custom SQL jobs."""
        return self.registry.available(self.custom_jobs)

    def job(self, name: str) -> Job[Any]:
        """The job of that name, or ConfigError listing the valid names."""
        return self.registry.get(name, self.custom_jobs)

    def job_settings(self, name: str) -> JobSettings:
        if name in self.custom_jobs:
            return self.custom_jobs[name]
        settings: JobSettings = getattr(self.jobs, self.registry.jobs[name].settings_key)
        return settings

    def trigger(self, name: str) -> BaseTrigger:
        """The job's schedule, in the scheduler's time zone."""
        return parse_schedule(self.job_settings(name).schedule, self.scheduler.schedule_timezone)

    def require_database_url(self) -> str:
        """The connection string; empty when libpq's own environment (PGHOST, PGSERVICE...) says where."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        raise ConfigError(
            "no database to connect to: set MAINTAINER_DATABASE_URL (or DATABASE_URL, or"
            " MAINTAINER_DATABASE_URL_FILE), pass --database-url, or set libpq's PGHOST/PGSERVICE"
        )


class _WithoutUrl(PydanticBaseSettingsSource):
    """The environment's settings but the database URL, whose variables database_url_source reads."""

    def __init__(self, env: PydanticBaseSettingsSource):
        super().__init__(env.settings_cls)
        self._env = env

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {key: value for key, value in self._env().items() if key != "database_url"}


# Variables maintainer reads outside the settings tree: the configuration file, the URL file, and the test
# suite's server.
_OTHER_VARIABLES = {CONFIG_ENV, URL_FILE_ENV, "MAINTAINER_TEST_DATABASE_URL"}
_EARLIER_NAMES = {"MAINTAINER_SCHEDULER__TIMEZONE"}  # still accepted (SchedulerSettings._earlier_name)


def _variable_names(model: type[BaseModel], prefix: str) -> set[str]:
    """Every MAINTAINER_* name that sets something in ``model``, nested with ``__``; ``*`` stands for a name
    of the configuration's own choosing (a custom job's)."""
    names = set()
    for field_name, field in model.model_fields.items():
        aliases = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
        for key in [field_name, *(alias for alias in aliases if isinstance(alias, str))]:
            if key.startswith("MAINTAINER_"):
                names.add(key)
            else:
                names.add(f"{prefix}{key.upper()}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _variable_names(annotation, f"{prefix}{field_name.upper()}__")
        elif getattr(annotation, "__origin__", None) is dict:
            value_type = annotation.__args__[1]  # type: ignore[union-attr]
            names |= _variable_names(value_type, f"{prefix}{field_name.upper()}__*__")
    return names


def _unknown_variables(model: type[Settings]) -> list[str]:
    """MAINTAINER_* variables of the environment that name no setting, each with the closest valid name."""
    valid = _variable_names(model, "MAINTAINER_") | _OTHER_VARIABLES | _EARLIER_NAMES
    patterns = [re.compile(re.escape(name).replace(r"\*", "[A-Z0-9_-]+") + "$") for name in valid if "*" in name]
    unknown = []
    for name in sorted(os.environ):
        upper = name.upper()
        if upper.startswith("MAINTAINER_") and upper not in valid and not any(p.match(upper) for p in patterns):
            closest = difflib.get_close_matches(upper, [name for name in valid if "*" not in name], n=1, cutoff=0.5)
            unknown.append(f"  {name}: no such setting" + (f"; did you mean {closest[0]}?" if closest else ""))
    return unknown


def _config_files(config_file: str | None) -> list[Path]:
    """The shipped defaults, then the operator's file (--config, else MAINTAINER_CONFIG), each valid TOML."""
    files = [default_config_file()]
    if chosen := config_file or os.environ.get(CONFIG_ENV):
        where = "--config" if config_file else CONFIG_ENV
        if not Path(chosen).is_file():
            raise ConfigError(f"{where}={chosen}: no such file")
        files.append(Path(chosen))
    for path in files:
        try:
            tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return files


@cache
def settings_model(registry: Registry) -> type[Settings]:
    """Settings with the jobs of ``registry``: ``[jobs.<job>]`` for each built-in job, ``[custom_jobs.<name>]``."""
    jobs_model = registry.jobs_model()
    custom_jobs: Any = dict[str, registry.custom_settings]  # type: ignore[name-defined]
    model: type[Settings] = create_model(
        "Settings", __base__=Settings, __doc__=Settings.__doc__,
        jobs=(jobs_model, jobs_model()), custom_jobs=(custom_jobs, {}),
    )
    model.registry = registry
    return model


def load_settings(registry: Registry, config_file: str | None = None, **overrides: Any) -> Settings:
    """Read and validate all settings for the jobs of ``registry``, or raise ConfigError naming each bad field
    and what it accepts."""
    model = settings_model(registry)
    if unknown := _unknown_variables(model):
        raise ConfigError("unknown environment variables (a setting's parts are joined with __):\n"
                          + "\n".join(unknown))
    files = _config_files(config_file)
    flag = overrides.pop("database_url", None)
    chosen = _FILES.set(files)
    try:
        settings = model(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        raise ConfigError("invalid settings:\n" + "\n".join(_describe(e) for e in error.errors())) from None
    finally:
        _FILES.reset(chosen)
    configured = settings.database_url.get_secret_value() if settings.database_url else None
    url, source = database_url_source(flag, configured)
    if url:
        check_database_url(url, source)
    return settings.model_copy(update={"database_url": None if url is None else SecretStr(url)})


def _describe(error: Any) -> str:
    location = [str(part) for part in error["loc"]]
    field = ".".join(location)
    env = "MAINTAINER_" + "__".join(part for part in location if not part.isdigit()).upper()
    text = f"  {field} (environment {env}): {error['msg'].removeprefix('Value error, ')}"
    if location and location[0] not in _SECRET_FIELDS and error["type"] != "missing":
        text += f"; got {error['input']!r}"
    return text
