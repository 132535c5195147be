"""Settings a newcomer gets wrong: each value that cannot work stops the process when the
settings load (or, for those parsed where they are used, when it starts), with a message
naming the variable and what is wrong; a misspelt variable is pointed out, not ignored."""

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
        ("LOG_LEVEL", "loud", "DOCUHOOKS_LOG_LEVEL: expected one of debug, info, warning"),
        ("DATABASE_URL", "mysql://u@db/x", "DOCUHOOKS_DATABASE_URL: unsupported database 'mysql'"),
        ("DATABASE_URL", "docuhooks.db", "DOCUHOOKS_DATABASE_URL: unsupported database"),
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
        "DATABASE_URL": "postgresql+asyncpg://u@db/x",
        "RENDER_MEMORY_LIMIT_BYTES": "0",
    }.items():
        monkeypatch.setenv(f"DOCUHOOKS_{variable}", value)
    settings = Settings.load()
    assert settings.port == 65535 and settings.worker_concurrency == 8
    # uvicorn knows the levels by their lower-case names only.
    assert settings.log_level == "warning"
    assert Settings.from_mapping({"worker_concurrency": 16.0}).worker_concurrency == 16


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"allowed_networks": "10.0.0.0/8, 127.0.0.1/33"},
            "setting DOCUHOOKS_ALLOWED_NETWORKS: entry 2 ('127.0.0.1/33')",
        ),
        ({"allowed_networks": "foo"}, "setting DOCUHOOKS_ALLOWED_NETWORKS: entry 1 ('foo')"),
        (
            {"retry_schedule": "0,10s,soon"},
            "setting DOCUHOOKS_RETRY_SCHEDULE: retry schedule entry 3 ('soon')",
        ),
    ],
)
def test_a_setting_parsed_where_it_is_used_is_parsed_at_start_too(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    """Unchecked, every delivery failed on it with a traceback and stayed in flight, and
    every interview hook answered 500."""
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789", **values)  # type: ignore[arg-type]
    with pytest.raises(SettingsError) as refused:
        AppContext.from_settings(settings)
    assert str(refused.value).startswith(message), refused.value
    assert not tmp_path.joinpath("secret.key").exists()


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
