"""Settings as an operator writes them: defaults, the shipped file, MAINTAINER_CONFIG, environment, --database-url."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import REGISTRY
from maintainer.database_url import database_url_source
from maintainer.errors import ConfigError
from maintainer.settings import settings_model
from tests.support.paths import ROOT
from tests.support.settings import load_settings

SHIPPED_CONFIG = ROOT / "config" / "maintainer.toml"
PASSWORD = "s3cret-pw"
URL_WITH_PASSWORD = f"postgresql://maintainer:{PASSWORD}@db.internal:5432/parlant"


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"jobs": {"cleanup_old_events": {"batch_size": 1}}}`` as ``{"jobs.cleanup_old_events.batch_size": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> Path:
    path = tmp_path / "maintainer.toml"
    path.write_text(text)
    monkeypatch.setenv("MAINTAINER_CONFIG", str(path))
    return path


def config_error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as error:
        load_settings(**overrides)
    return str(error.value)


def test_shipped_config_lists_every_setting_with_its_built_in_default() -> None:
    built_in = flatten(settings_model(REGISTRY).model_construct().model_dump())
    shipped_keys = set(flatten(tomllib.loads(SHIPPED_CONFIG.read_text())))

    # The URL is a secret, never in a file; the session's zone is the database's unless set (commented out).
    assert shipped_keys == set(built_in) - {"database_url", "session_timezone"}
    assert '# session_timezone = "UTC"' in SHIPPED_CONFIG.read_text()
    assert flatten(load_settings().model_dump()) == built_in


def test_nested_environment_variable_overrides_one_job_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS", "120")

    cleanup = load_settings().jobs.cleanup_old_events

    assert cleanup.retention_days == 120
    assert cleanup.batch_size == 5000


def test_database_url_is_read_from_DATABASE_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@generic/parlant")

    assert load_settings().require_database_url() == "postgresql://app@generic/parlant"


def test_MAINTAINER_DATABASE_URL_wins_over_DATABASE_URL(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@generic/parlant")
    monkeypatch.setenv("MAINTAINER_DATABASE_URL", "postgresql://maintainer@specific/parlant")

    assert load_settings().require_database_url() == "postgresql://maintainer@specific/parlant"


def test_database_url_flag_wins_over_both_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@generic/parlant")
    monkeypatch.setenv("MAINTAINER_DATABASE_URL", "postgresql://maintainer@specific/parlant")

    settings = load_settings(database_url="postgresql://operator@flag/parlant")

    assert settings.require_database_url() == "postgresql://operator@flag/parlant"


def test_missing_database_url_is_refused_naming_where_to_set_it() -> None:
    with pytest.raises(ConfigError, match="MAINTAINER_DATABASE_URL"):
        load_settings().require_database_url()


def test_config_file_overrides_only_the_keys_it_sets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user_config(monkeypatch, tmp_path, "[jobs.cleanup_old_events]\nretention_days = 45\n")

    settings = load_settings()

    assert settings.jobs.cleanup_old_events.retention_days == 45
    assert settings.jobs.cleanup_old_events.schedule == "0 2 * * *"
    assert settings.jobs.cleanup_old_events.statement_timeout == timedelta(minutes=1)
    assert settings.jobs.cleanup_old_events.session_statuses == ["completed"]
    assert settings.scheduler.schedule_timezone == "UTC"


def test_environment_wins_over_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user_config(monkeypatch, tmp_path, "[jobs.cleanup_old_events]\nretention_days = 45\n")
    monkeypatch.setenv("MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS", "60")

    assert load_settings().jobs.cleanup_old_events.retention_days == 60


def test_missing_config_file_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAINTAINER_CONFIG", str(tmp_path / "absent.toml"))

    message = config_error()

    assert "MAINTAINER_CONFIG" in message
    assert "absent.toml" in message


def test_config_file_that_is_not_toml_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user_config(monkeypatch, tmp_path, "[jobs.cleanup_old_events\nretention_days = = 45\n")

    assert "not valid TOML" in config_error()


def test_retention_below_one_day_is_refused_naming_the_field_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS", "0")

    message = config_error()

    assert "jobs.cleanup_old_events.retention_days" in message
    assert "MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS" in message


def test_misspelt_job_setting_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user_config(monkeypatch, tmp_path, "[jobs.cleanup_old_events]\nretenton_days = 45\n")

    assert "jobs.cleanup_old_events.retenton_days" in config_error()


def test_unknown_timezone_is_refused_naming_the_field() -> None:
    message = config_error(timezone="Mars/Olympus_Mons")

    assert "timezone" in message
    assert "Mars/Olympus_Mons" in message


def test_unparseable_duration_is_refused_naming_the_field_and_the_allowed_forms() -> None:
    message = config_error(jobs={"cleanup_old_events": {"lock_timeout": "5 parsecs"}})

    assert "jobs.cleanup_old_events.lock_timeout" in message
    assert all(form in message for form in ("500ms", "5s", "2min", "1h", "1d"))


@pytest.mark.parametrize(
    ("written", "duration"),
    [("500ms", timedelta(milliseconds=500)), ("2min", timedelta(minutes=2)), (3, timedelta(seconds=3))],
)
def test_durations_accept_postgresql_units_and_plain_seconds(written: str | int, duration: timedelta) -> None:
    assert load_settings(connect_timeout=written).connect_timeout == duration


@pytest.mark.parametrize(("batch_size", "accepted"), [(0, False), (1, True), (100_000, True), (100_001, False)])
def test_batch_size_must_be_between_one_and_a_hundred_thousand(batch_size: int, accepted: bool) -> None:
    overrides = {"jobs": {"cleanup_old_events": {"batch_size": batch_size}}}
    if accepted:
        assert load_settings(**overrides).jobs.cleanup_old_events.batch_size == batch_size
    else:
        assert "jobs.cleanup_old_events.batch_size" in config_error(**overrides)


def test_unknown_session_status_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__SESSION_STATUSES", '["completed", "archived"]')

    message = config_error()

    assert "session_statuses" in message
    assert "archived" in message


def test_database_password_is_hidden_in_repr_and_str() -> None:
    settings = load_settings(database_url=URL_WITH_PASSWORD)

    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert settings.require_database_url() == URL_WITH_PASSWORD


def test_database_password_stays_out_of_errors_about_other_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINTAINER_DATABASE_URL", URL_WITH_PASSWORD)
    monkeypatch.setenv("MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS", "0")

    message = config_error()

    assert "retention_days" in message
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("url", "named"),
    [
        pytest.param(f"host=db.internal password={PASSWORD} dbname='parlant", "cannot be parsed",
                     id="unterminated-quote"),
        pytest.param(f"postgresql://maintainer:{PASSWORD}@db.internal:5432/parlant?sslmode", "cannot be parsed",
                     id="option-without-value"),
        pytest.param(f"postgresql://maintainer:{PASSWORD}@db.internal:notaport/parlant", "its port",
                     id="port-not-a-number"),
        # An unencoded @ in the password: libpq would take the password's tail for the host name.
        pytest.param(f"postgresql://maintainer:{PASSWORD}@PW-4711@db.internal/parlant", "more than one @",
                     id="at-sign-in-the-password"),
        # An unencoded / ends the host part inside the password: its first half becomes host and port.
        pytest.param("postgresql://maintainer:Sekret/PW-4711@db.internal/parlant", "its port",
                     id="slash-in-the-password"),
        pytest.param(f"postgresql://maintainer:{PASSWORD}@db.internal/parlant?connect_timeout=abc",
                     "connect_timeout must be a whole number", id="connect-timeout-not-a-number"),
    ],
)
def test_malformed_database_url_is_refused_naming_where_it_came_from_and_no_part_of_the_password(
    url: str, named: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url_file = tmp_path / "database-url"
    url_file.write_text(url)
    messages = {"--database-url": config_error(database_url=url)}
    for source in ("MAINTAINER_DATABASE_URL", "DATABASE_URL", "MAINTAINER_DATABASE_URL_FILE"):
        with monkeypatch.context() as environment:
            environment.setenv(source, str(url_file) if source.endswith("_FILE") else url)
            messages[source] = config_error()

    for source, message in messages.items():
        assert f"the database URL from {'the file ' if source.endswith('_FILE') else ''}{source}" in message
        assert named in message
        for secret in (PASSWORD, "PW-4711", "Sekret"):
            assert secret not in message


@pytest.mark.parametrize(("variable", "closest"), [
    ("MAINTAINER_TIMEZON", "MAINTAINER_TIMEZONE"),
    ("MAINTAINER_JOBS_CLEANUP_OLD_EVENTS__RETENTION_DAYS", "MAINTAINER_JOBS__CLEANUP_OLD_EVENTS__RETENTION_DAYS"),
    ("MAINTAINER_SCHEDULER__SHUTDOWN_GRACE_S", "MAINTAINER_SCHEDULER__SHUTDOWN_GRACE"),
])
def test_a_variable_that_names_no_setting_is_refused_naming_the_closest_one(
    monkeypatch: pytest.MonkeyPatch, variable: str, closest: str
) -> None:
    monkeypatch.setenv(variable, "5")

    message = config_error()

    assert f"{variable}: no such setting; did you mean {closest}?" in message


def test_every_setting_and_a_custom_jobs_settings_can_be_set_from_the_environment(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAINTAINER_CUSTOM_JOBS__NIGHTLY_VACUUM__SCHEDULE", "@daily")
    monkeypatch.setenv("MAINTAINER_CUSTOM_JOBS__NIGHTLY_VACUUM__SQL", "VACUUM parlant_agent")
    monkeypatch.setenv("MAINTAINER_SCHEDULER__SCHEDULE_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("MAINTAINER_SESSION_TIMEZONE", "America/New_York")

    settings = load_settings()

    assert settings.custom_jobs["nightly_vacuum"].sql == "VACUUM parlant_agent"
    assert (settings.scheduler.schedule_timezone, settings.session_timezone) == ("Europe/Berlin", "America/New_York")


def test_the_two_zones_earlier_names_are_still_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user_config(monkeypatch, tmp_path, 'timezone = "Asia/Tokyo"\n[scheduler]\ntimezone = "Europe/Berlin"\n')

    settings = load_settings()

    assert (settings.session_timezone, settings.scheduler.schedule_timezone) == ("Asia/Tokyo", "Europe/Berlin")


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("jobs.cleanup_old_events.retention_days", 1_000_000_000, "less than or equal to 36500"),
    ("history.table", "a.b.c", "schema-qualified"),
    ("history.table", "run history; DROP", "schema-qualified"),
    ("jobs.cleanup_old_events.event_table", "parlant-event", "schema-qualified"),
    ("jobs.update_statistics.tables", ["parlant_agent", ""], "schema-qualified"),
])
def test_a_value_with_no_sane_meaning_is_refused_at_load_naming_the_setting(
    setting: str, value: Any, named: str
) -> None:
    *parents, key = setting.split(".")
    overrides: dict[str, Any] = {key: value}
    for parent in reversed(parents):
        overrides = {parent: overrides}

    message = config_error(**overrides)

    assert setting in message and named in message


def test_a_configuration_file_that_is_not_toml_is_refused_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = user_config(monkeypatch, tmp_path, "[jobs.cleanup_old_events\nretention_days = 45\n")

    message = config_error()

    assert message.startswith(f"{path}: not valid TOML: ")


@pytest.mark.parametrize(("environment", "flag", "configured", "expected"), [
    ({"MAINTAINER_DATABASE_URL": "env", "DATABASE_URL": "plain", "PGHOST": "h"}, "flag", "file",
     ("flag", "--database-url")),
    ({"MAINTAINER_DATABASE_URL": "env", "DATABASE_URL": "plain"}, None, "file", ("env", "MAINTAINER_DATABASE_URL")),
    ({"MAINTAINER_DATABASE_URL": " ", "DATABASE_URL": "plain"}, None, "file", ("plain", "DATABASE_URL")),
    ({"PGHOST": "h"}, None, "file", ("file", "database_url in the configuration file")),
    ({"PGHOST": "h"}, None, None, ("", "libpq's environment (PGHOST, PGHOSTADDR, PGSERVICE, PGDATABASE, PGUSER)")),
    ({}, None, None, (None, "nowhere")),
], ids=["the flag", "MAINTAINER_DATABASE_URL", "DATABASE_URL", "the configuration file", "libpq", "none"])
def test_the_database_url_comes_from_the_first_place_that_sets_it(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], flag: str | None, configured: str | None,
    expected: tuple[str | None, str],
) -> None:
    for name in ("PGHOST", "PGHOSTADDR", "PGSERVICE", "PGDATABASE", "PGUSER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert database_url_source(flag, configured) == expected


def test_a_database_url_in_the_configuration_file_is_used_when_nothing_else_sets_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    user_config(monkeypatch, tmp_path, 'database_url = "postgresql://from-the-file@db/sim"\n')

    assert load_settings().require_database_url() == "postgresql://from-the-file@db/sim"
    assert load_settings(database_url="postgresql://flag@db/sim").require_database_url() == "postgresql://flag@db/sim"
