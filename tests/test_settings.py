"""Settings a newcomer gets wrong: each value that cannot work stops the process when the
settings load, with a message naming the variable and what is wrong; a misspelt variable is
pointed out, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from docuhooks.context import AppContext
from docuhooks.settings import Settings, SettingsError, unknown_variables


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PORT", "99999", "DOCUHOOKS_PORT: a port is 1 to 65535, not 99999"),
        ("PORT", "0", "DOCUHOOKS_PORT: a port is 1 to 65535, not 0"),
        ("SECRET_KEY", "short", "DOCUHOOKS_SECRET_KEY: must be at least 16 characters, not 5"),
        ("WORKER_CONCURRENCY", "abc", "DOCUHOOKS_WORKER_CONCURRENCY: expected a whole number"),
        ("WORKER_CONCURRENCY", "0", "DOCUHOOKS_WORKER_CONCURRENCY: must be at least 1, not 0"),
        ("WORKER_POLL_SECONDS", "nan", "DOCUHOOKS_WORKER_POLL_SECONDS: expected a number"),
        ("WORKER_POLL_SECONDS", "0", "DOCUHOOKS_WORKER_POLL_SECONDS: must be more than 0"),
        ("CONNECTIONS_PER_HOST", "0", "DOCUHOOKS_CONNECTIONS_PER_HOST: must be at least 1"),
        ("RENDER_WORKERS_PER_SITE", "-1", "DOCUHOOKS_RENDER_WORKERS_PER_SITE: must be 0 or more"),
        ("SITE_STORAGE_QUOTA_BYTES", "-1", "DOCUHOOKS_SITE_STORAGE_QUOTA_BYTES: must be 0 or more"),
        ("SITE_STORAGE_QUOTA_FILES", "1e5", "DOCUHOOKS_SITE_STORAGE_QUOTA_FILES: expected a whole"),
        ("SITE_MAX_WEBHOOKS", "-5", "DOCUHOOKS_SITE_MAX_WEBHOOKS: must be 0 or more, not -5"),
        ("WEBHOOK_TESTS_PER_MINUTE", "-1", "DOCUHOOKS_WEBHOOK_TESTS_PER_MINUTE: must be 0 or more"),
        ("REDELIVERIES_PER_MINUTE", "-1", "DOCUHOOKS_REDELIVERIES_PER_MINUTE: must be 0 or more"),
        ("LOG_LEVEL", "loud", "DOCUHOOKS_LOG_LEVEL: expected one of debug, info, warning"),
        ("DATABASE_URL", "mysql://u@db/x", "DOCUHOOKS_DATABASE_URL: unsupported database 'mysql'"),
        ("DATABASE_URL", "docuhooks.db", "DOCUHOOKS_DATABASE_URL: unsupported database"),
        ("DATABASE_URL", "SQLITE:///x.db", "DOCUHOOKS_DATABASE_URL: unsupported database 'SQLITE'"),
        (
            "DATABASE_URL",
            "postgresql://u@db/x?connect_timeout=5&foo=1",
            "DOCUHOOKS_DATABASE_URL: parameter 'foo' is not one the PostgreSQL driver (asyncpg) "
            "takes; accepted: application_name,",
        ),
        (
            "DATABASE_DIRECT_URL",
            "postgresql://u@db/x?sslcert=/etc/client.pem",
            "DOCUHOOKS_DATABASE_DIRECT_URL: parameter 'sslcert' is not one the PostgreSQL driver "
            "(asyncpg) takes in a URL; set the environment variable PGSSLCERT instead",
        ),
        (
            "DATABASE_URL",
            "sqlite:///docuhooks.db?timeout=5",
            "DOCUHOOKS_DATABASE_URL: parameter 'timeout': an sqlite:/// URL takes no parameters",
        ),
        # Checked only where they were read at start before (`AppContext.from_settings`,
        # `Caps.from_settings`, `database_of`), each in words of its own.
        ("ATTEMPT_RETENTION_DAYS", "0", "DOCUHOOKS_ATTEMPT_RETENTION_DAYS: must be at least 1"),
        ("DELIVERY_RETENTION_DAYS", "-1", "DOCUHOOKS_DELIVERY_RETENTION_DAYS: must be 0 or more"),
        ("CONNECT_TIMEOUT_SECONDS", "0", "DOCUHOOKS_CONNECT_TIMEOUT_SECONDS: must be more than 0"),
        (
            "INTERACTIVE_CALLS_PER_SITE",
            "0",
            "DOCUHOOKS_INTERACTIVE_CALLS_PER_SITE: must be at least 1, not 0",
        ),
        ("SITE_MAX_IN_FLIGHT", "-1", "DOCUHOOKS_SITE_MAX_IN_FLIGHT: must be 0 or more, not -1"),
        ("DESTINATION_MAX_IN_FLIGHT", "-1", "DOCUHOOKS_DESTINATION_MAX_IN_FLIGHT: must be 0 or"),
        (
            "SQLITE_SYNCHRONOUS",
            "off",
            "DOCUHOOKS_SQLITE_SYNCHRONOUS: expected one of normal, full, got 'off'",
        ),
        (
            "DATABASE_POOLER",
            "session",
            "DOCUHOOKS_DATABASE_POOLER: expected one of none, transaction, got 'session'",
        ),
        (
            "DATABASE_LISTEN_URL",
            "sqlite:///x.db",
            "DOCUHOOKS_DATABASE_LISTEN_URL: must be a postgresql:// URL",
        ),
        (
            "ALLOWED_NETWORKS",
            "10.0.0.0/8, 127.0.0.1/33",
            "DOCUHOOKS_ALLOWED_NETWORKS: entry 2 ('127.0.0.1/33')",
        ),
        ("ALLOWED_NETWORKS", "foo", "DOCUHOOKS_ALLOWED_NETWORKS: entry 1 ('foo')"),
        (
            "RETRY_SCHEDULE",
            "0,10s,soon",
            "DOCUHOOKS_RETRY_SCHEDULE: retry schedule entry 3 ('soon')",
        ),
    ],
)
def test_a_value_that_cannot_work_stops_the_settings_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"DOCUHOOKS_{variable}", value)
    with pytest.raises(SettingsError) as refused:
        Settings.load()
    assert str(refused.value).startswith(f"setting {message}"), refused.value


def test_values_that_work_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in {
        "PORT": "65535",
        "SECRET_KEY": "s" * 16,
        "WORKER_CONCURRENCY": " 8 ",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": "postgresql+asyncpg://u@db/x?sslmode=require&connect_timeout=10",
        "RENDER_MEMORY_LIMIT_BYTES": "0",
        # The lowest value each setting once checked only at start takes.
        "ATTEMPT_RETENTION_DAYS": "1",
        "DELIVERY_RETENTION_DAYS": "0",
        "CONNECT_TIMEOUT_SECONDS": "0.001",
        "INTERACTIVE_CALLS_PER_SITE": "1",
        "SITE_MAX_IN_FLIGHT": "0",
        "DESTINATION_MAX_IN_FLIGHT": "0",
        "SQLITE_SYNCHRONOUS": "full",
        "ALLOWED_NETWORKS": " 10.0.0.0/8, ,::1/128",
        "RETRY_SCHEDULE": "5",
        "SITE_MAX_WEBHOOKS": "0",  # 0: no limit
        "WEBHOOK_TESTS_PER_MINUTE": "0",
    }.items():
        monkeypatch.setenv(f"DOCUHOOKS_{variable}", value)
    settings = Settings.load()
    assert settings.port == 65535 and settings.worker_concurrency == 8
    # uvicorn knows the levels by their lower-case names only.
    assert settings.log_level == "warning"
    assert Settings.from_mapping({"worker_concurrency": 16.0}).worker_concurrency == 16


def test_every_value_that_stops_a_start_is_refused_when_the_settings_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One place refuses them all: a value that cannot be used never reaches a command's
    start (where `docuhooks demo --reset` had already emptied its directory). What the
    environment alone names, a proxy variable that is no setting, is refused at start."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for values in (
        {"attempt_retention_days": 0},
        {"delivery_retention_days": -1},
        {"connect_timeout_seconds": 0.0},
        {"interactive_calls_per_site": 0},
        {"destination_max_in_flight": -1},
        {"sqlite_synchronous": "NORMAL"},
        {"database_pooler": ""},
        {"allowed_networks": "10.0.0.1/8"},
        {"retry_schedule": ""},
    ):
        with pytest.raises(SettingsError):
            Settings(data_dir=tmp_path, **values)
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy:1080")
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")
    with pytest.raises(SettingsError, match="HTTPS_PROXY: only http:// proxies"):
        AppContext.from_settings(settings)
    assert list(tmp_path.iterdir()) == []


def test_a_misspelt_variable_is_named_with_the_setting_it_is_closest_to() -> None:
    environ = {
        "DOCUHOOKS_ALLOWED_NETWORK": "10.0.0.0/8",
        "DOCUHOOKS_WORKER_CONCURENCY": "8",
        "DOCUHOOKS_SOMETHING": "1",
        "DOCUHOOKS_PORT": "8000",  # a setting
        "DOCUHOOKS_CONFIG": "docuhooks.toml",  # read by every command, not a setting
        "DOCUHOOKS_WEBHOOK_SECRETS": "…",  # the receiver examples'
        "OTHER": "1",
    }
    assert unknown_variables(environ) == {
        "DOCUHOOKS_ALLOWED_NETWORK": "DOCUHOOKS_ALLOWED_NETWORKS",
        "DOCUHOOKS_SOMETHING": None,
        "DOCUHOOKS_WORKER_CONCURENCY": "DOCUHOOKS_WORKER_CONCURRENCY",
    }
