"""The `docuhooks` command as a newcomer meets it: help that says what each command does, and
admin commands that find the installation or say where they looked, never make a new one."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from docuhooks import cli
from docuhooks.settings import Settings, SettingsError

#: Variables that would point a command somewhere else than the test says.
_ENV = {name: None for name in os.environ if name.startswith("DOCUHOOKS_")}


def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    merged: dict[str, str | None] = {**_ENV, "DOCUHOOKS_SECRET_KEY": "cli-test-key-0123456789ab"}
    merged.update(env or {})
    return CliRunner().invoke(cli.main, list(args), env=merged, input=input)


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))


def test_every_command_has_a_description_shown_whole() -> None:
    every = list(commands(cli.main))
    assert ("admin", "create-site") in every and ("serve",) in every
    for path in every:
        command: click.Command = cli.main
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        assert command.help and len(command.help.split()) >= 4, f"{path} has no description"
        summary = command.help.split("\n\n")[0].strip()
        assert summary.endswith("."), f"{path}: the first line is a sentence"
        # Its parent's listing shows that sentence whole, not cut off with "...".
        listing = invoke(*path[:-1], "--help").output
        row = re.search(rf"^  {re.escape(path[-1])} +(.+)$", listing, re.MULTILINE)
        assert row is not None, listing
        assert row.group(1) == " ".join(summary.split()), listing
        own = invoke(*path, "--help")
        assert own.exit_code == 0 and " ".join(summary.split()) in " ".join(own.output.split())
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{path}: {param.opts} has no help"


def test_serve_help_says_where_the_data_lives() -> None:
    text = " ".join(invoke("serve", "--help").output.split())
    assert "--data-dir" in text and "./docuhooks-data" in text and "DOCUHOOKS_DATA_DIR" in text


def test_an_admin_command_elsewhere_names_the_directory_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli.main, ["admin", "create-site", "Acme", "--base-url", "https://acme.example"], env=_ENV
    )
    assert result.exit_code == 1, result.output
    looked_in = str((tmp_path / "docuhooks-data").resolve())
    assert f"no docuhooks installation in {looked_in}" in result.output
    assert "docuhooks db upgrade --data-dir docuhooks-data" in result.output
    assert "--data-dir" in result.output and "DOCUHOOKS_DATA_DIR" in result.output
    assert os.listdir(tmp_path) == [], "nothing was created"


def test_admin_commands_work_on_the_installation_data_dir_names(tmp_path: Path) -> None:
    data = tmp_path / "data"
    missing = invoke("admin", "create-token", "--login", "ann@example.com", "--data-dir", str(data))
    assert missing.exit_code == 1 and str(data.resolve()) in missing.output
    assert not data.exists()

    created = invoke("db", "upgrade", "--data-dir", str(data))
    assert created.exit_code == 0, created.output
    assert (data / "docuhooks.db").exists()
    site = invoke("admin", "create-site", "Acme", "--base-url", "https://acme.example",
                  "--data-dir", str(data))  # fmt: skip
    assert site.exit_code == 0, site.output
    site_id = site.output.strip()
    uuid.UUID(site_id)
    # DOCUHOOKS_DATA_DIR names it as well; --data-dir wins over it.
    user = invoke(
        "admin", "create-user", "--site", site_id, "--login", "ann@example.com",
        "--name", "Ann", "--role", "User", env={"DOCUHOOKS_DATA_DIR": str(data)},
    )  # fmt: skip
    assert user.exit_code == 0, user.output
    token = invoke(
        "admin", "create-token", "--login", "ann@example.com", "--data-dir", str(data),
        env={"DOCUHOOKS_DATA_DIR": str(tmp_path / "nowhere")},
    )  # fmt: skip
    assert token.exit_code == 0, token.output
    assert token.output.strip() and not (tmp_path / "nowhere").exists()


def test_the_admin_group_takes_data_dir_for_its_commands(tmp_path: Path) -> None:
    """`admin --help` points at --data-dir: given to the group it names the installation for
    the command, and the command's own wins over it."""
    data = tmp_path / "data"
    missing = invoke("admin", "--data-dir", str(data), "create-token", "--login", "a@b.example")
    assert missing.exit_code == 1 and f"no docuhooks installation in {data.resolve()}" in (
        missing.output
    )
    assert not data.exists()
    assert invoke("db", "upgrade", "--data-dir", str(data)).exit_code == 0
    site = invoke("admin", "--data-dir", str(data), "create-site", "Acme",
                  "--base-url", "https://acme.example")  # fmt: skip
    assert site.exit_code == 0, site.output
    uuid.UUID(site.output.strip())
    nowhere = tmp_path / "nowhere"
    own_wins = invoke("admin", "--data-dir", str(nowhere), "create-site", "Beta",
                      "--base-url", "https://beta.example", "--data-dir", str(data))  # fmt: skip
    assert own_wins.exit_code == 0, own_wins.output
    assert not nowhere.exists()


def test_a_worker_elsewhere_refuses_as_the_admin_commands_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["worker"], env=_ENV)
    assert result.exit_code == 1, result.output
    looked_in = str((tmp_path / "docuhooks-data").resolve())
    assert f"no docuhooks installation in {looked_in}" in result.output
    assert "docuhooks db upgrade --data-dir docuhooks-data" in result.output
    assert os.listdir(tmp_path) == [], "nothing was created"


def test_serve_on_a_busy_port_says_so_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli.main, ["serve", "--port", str(port)], env=_ENV)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: the server cannot listen on 127.0.0.1:{port} (Address already in use); "
        "try --port\n"
    )
    assert os.listdir(tmp_path) == [], "nothing was created"


def test_listen_says_which_options_type_a_plain_secret() -> None:
    result = invoke("listen", "--secret", "foo", "--port", "0")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--hmac-secret or --access-token" in text and "--auth-method HMAC" in text
    assert "HmacSecret(" not in text


def test_an_admin_command_without_the_servers_secret_key_makes_none(tmp_path: Path) -> None:
    """The server's key is set in its environment, not in the data directory: an admin
    command run without it would make a key of its own and store tokens the server cannot
    read."""
    data = tmp_path / "data"
    assert invoke("db", "upgrade", "--data-dir", str(data)).exit_code == 0
    refused = invoke(
        "admin", "create-site", "Acme", "--base-url", "https://acme.example",
        "--data-dir", str(data), env={"DOCUHOOKS_SECRET_KEY": ""},
    )  # fmt: skip
    assert refused.exit_code == 1, refused.output
    assert "secret key is neither set (DOCUHOOKS_SECRET_KEY) nor in" in refused.output
    assert not (data / "secret.key").exists()


def test_a_process_with_another_secret_key_stops_before_it_starts(tmp_path: Path) -> None:
    """An installation's processes share its key (a worker or API server started elsewhere
    with a key of its own would store secrets no other process can read, or fail every
    call it signs): one given another key stops at start, naming the setting."""
    data = tmp_path / "data"
    assert invoke("db", "upgrade", "--data-dir", str(data)).exit_code == 0
    other = {"DOCUHOOKS_SECRET_KEY": "another-servers-key-0123456789"}
    with socket.socket() as probe:  # a port to serve on (0 is refused since 91c1cb1)
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    for command in (["worker"], ["db", "upgrade"], ["serve", "--port", port]):
        refused = invoke(*command, "--data-dir", str(data), env=other)
        assert refused.exit_code == 1, (command, refused.output)
        text = " ".join(refused.output.split())
        assert "secret key is not the one this installation's secrets are encrypted with" in text
        assert "DOCUHOOKS_SECRET_KEY" in text
        assert "Traceback" not in refused.output


def test_an_empty_postgresql_database_is_not_an_installation() -> None:
    from tests.conftest import new_postgres_database

    with new_postgres_database("docuhooks_empty") as url:
        refused = invoke(
            "admin", "create-site", "Acme", "--base-url", "https://acme.example",
            env={"DOCUHOOKS_DATABASE_URL": url},
        )  # fmt: skip
        assert refused.exit_code == 1, refused.output
        assert f"no docuhooks installation in the database {url}" in refused.output
        assert "holds no docuhooks tables" in refused.output
        assert "docuhooks db upgrade`" in refused.output
        assert invoke("db", "upgrade", env={"DOCUHOOKS_DATABASE_URL": url}).exit_code == 0
        made = invoke(
            "admin", "create-site", "Acme", "--base-url", "https://acme.example",
            env={"DOCUHOOKS_DATABASE_URL": url},
        )  # fmt: skip
        assert made.exit_code == 0, made.output


def test_log_json_is_true_false_or_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, expected in (("auto", None), ("", None), ("true", True), ("false", False)):
        monkeypatch.setenv("DOCUHOOKS_LOG_JSON", raw)
        assert Settings.load().log_json is expected
    monkeypatch.setenv("DOCUHOOKS_LOG_JSON", "sometimes")
    with pytest.raises(SettingsError, match="LOG_JSON: expected true, false or auto"):
        Settings.load()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def refused_in_one_line(result: Result, message: str, *, code: int = 1) -> None:
    """`result` ended with `message` on standard error, and no traceback."""
    assert result.exit_code == code, result.output
    assert result.stderr.endswith(f"{message}\n"), result.stderr
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


@pytest.fixture
def installation(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert invoke("db", "upgrade", "--data-dir", str(data)).exit_code == 0
    return data


def test_an_unusable_allowed_networks_stops_serve_and_worker(installation: Path) -> None:
    """Accepted, it made every delivery fail with a traceback and stay in flight, and every
    interview hook answer 500."""
    bad = {"DOCUHOOKS_ALLOWED_NETWORKS": "10.0.0.0/8,127.0.0.1/33"}
    message = (
        "Error: setting DOCUHOOKS_ALLOWED_NETWORKS: entry 2 ('127.0.0.1/33'): "
        "'127.0.0.1/33' does not appear to be an IPv4 or IPv6 network"
    )
    # A process of its own: a server that starts would not return.
    served = subprocess.run(
        [sys.executable, "-m", "docuhooks", "serve", "--data-dir", str(installation),
         "--port", str(free_port())],
        env={**os.environ, **bad, "DOCUHOOKS_SECRET_KEY": "cli-test-key-0123456789ab"},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert (served.returncode, served.stderr) == (1, f"{message}\n")
    refused_in_one_line(invoke("worker", "--data-dir", str(installation), env=bad), message)


@pytest.mark.parametrize(
    ("args", "env", "message", "code"),
    [
        (
            ("serve", "--port", "99999"),
            {},
            "Error: Invalid value for '--port': 99999 is not in the range 1<=x<=65535.",
            2,
        ),
        (
            ("serve",),
            {"DOCUHOOKS_PORT": "99999"},
            "Error: setting DOCUHOOKS_PORT: a port is 1 to 65535, not 99999",
            1,
        ),
        (
            ("worker", "--metrics-port", "70000"),
            {},
            "Error: Invalid value for '--metrics-port': 70000 is not in the range 1<=x<=65535.",
            2,
        ),
        (
            ("serve",),
            {"DOCUHOOKS_SECRET_KEY": "short"},
            "Error: setting DOCUHOOKS_SECRET_KEY: must be at least 16 characters, not 5: set a "
            "long random string, or leave it empty for the key generated into the data directory",
            1,
        ),
        (
            ("worker",),
            {"DOCUHOOKS_WORKER_CONCURRENCY": "abc"},
            "Error: setting DOCUHOOKS_WORKER_CONCURRENCY: expected a whole number, got 'abc'",
            1,
        ),
        (
            ("serve",),
            {"DOCUHOOKS_DATABASE_URL": "mysql://u@db.example/x"},
            "Error: setting DOCUHOOKS_DATABASE_URL: unsupported database 'mysql': use "
            "postgresql://user@host/database, sqlite:///path, or leave it empty for SQLite in "
            "the data directory",
            1,
        ),
        (
            ("serve",),
            {"DOCUHOOKS_LOG_LEVEL": "loud"},
            "Error: setting DOCUHOOKS_LOG_LEVEL: expected one of debug, info, warning, error, "
            "critical, got 'loud'",
            1,
        ),
        (
            ("db", "upgrade"),
            {"DOCUHOOKS_RETRY_SCHEDULE": "0,often"},
            "Error: setting DOCUHOOKS_RETRY_SCHEDULE: retry schedule entry 2 ('often'): expected "
            "a number with an optional unit s, m, h or d, e.g. '10s' or '2h'",
            1,
        ),
    ],
)
def test_a_bad_option_or_setting_is_one_line_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    message: str,
    code: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    refused_in_one_line(invoke(*args, env=env), message, code=code)
    assert os.listdir(tmp_path) == [], "nothing was created"


def test_a_database_that_cannot_be_used_is_one_line_naming_it(tmp_path: Path) -> None:
    from tests.conftest import new_postgres_database

    with new_postgres_database("docuhooks_gone") as url:
        pass  # made and dropped: a server that answers, and a database it does not have
    missing = {"DOCUHOOKS_DATABASE_URL": url}
    name = url.rsplit("/", 1)[1]
    advice = (
        "Check that the database server is running and reachable there, that the database "
        "exists (`createdb`), and that the URL's user may connect."
    )
    does_not_exist = (
        f"Error: cannot use the database {url} (DOCUHOOKS_DATABASE_URL): "
        f'database "{name}" does not exist. {advice}'
    )
    port = str(free_port())
    refused_in_one_line(invoke("db", "upgrade", env=missing), does_not_exist)
    refused_in_one_line(invoke("worker", env=missing), does_not_exist)
    refused_in_one_line(invoke("serve", "--port", port, "--data-dir", str(tmp_path), env=missing),
                        does_not_exist)  # fmt: skip

    closed = free_port()
    unreachable = {"DOCUHOOKS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/test"}
    for args in (("worker",), ("serve", "--port", port, "--data-dir", str(tmp_path))):
        result = invoke(*args, env=unreachable)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.stderr.startswith(
            f"Error: cannot use the database postgresql://postgres@127.0.0.1:{closed}/test "
            "(DOCUHOOKS_DATABASE_URL): "
        ), result.stderr
        assert result.stderr.endswith(f"{advice}\n")


def test_a_worker_whose_metrics_port_is_taken_says_so(installation: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("worker", "--data-dir", str(installation), "--metrics-port", str(port))
    refused_in_one_line(
        result,
        f"Error: the worker's metrics cannot listen on 127.0.0.1:{port} (Address already in "
        "use); try another --metrics-port",
    )


def test_a_misspelt_setting_is_pointed_out_not_ignored(installation: Path) -> None:
    result = invoke(
        "admin", "create-site", "Acme", "--base-url", "https://acme.example",
        "--data-dir", str(installation), env={"DOCUHOOKS_ALLOWED_NETWORK": "10.0.0.0/8"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    uuid.UUID(result.stdout.strip())  # standard output still holds the id alone
    assert result.stderr == (
        "Warning: DOCUHOOKS_ALLOWED_NETWORK is not a docuhooks setting, and is ignored; "
        "did you mean DOCUHOOKS_ALLOWED_NETWORKS?\n"
    )


def test_worker_dev_means_what_serve_dev_means(
    installation: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --no-worker --dev` beside a worker: the worker lets loopback through only when
    it is in development mode too."""
    seen: list[Settings] = []
    monkeypatch.setattr(cli, "_run_with_db", lambda settings, *a, **k: seen.append(settings))
    assert invoke("worker", "--data-dir", str(installation), "--dev").exit_code == 0
    assert invoke("worker", "--data-dir", str(installation)).exit_code == 0
    on = invoke("worker", "--data-dir", str(installation), env={"DOCUHOOKS_DEV_MODE": "true"})
    assert on.exit_code == 0
    assert [settings.dev_mode for settings in seen] == [True, False, True]


def test_a_postgresql_url_with_libpq_sslmode_works() -> None:
    """`?sslmode=require` is how hosted PostgreSQL services hand out their URLs (libpq's
    spelling); asyncpg calls it `ssl`. The URL was passed on as is, and every command ended
    in a traceback: `connect() got an unexpected keyword argument 'sslmode'`."""
    from tests.conftest import new_postgres_database

    with new_postgres_database("docuhooks_sslmode") as url:
        done = invoke("db", "upgrade", env={"DOCUHOOKS_DATABASE_URL": url + "?sslmode=disable"})
        assert done.exit_code == 0, done.output
        assert "Traceback" not in done.output


def test_a_postgresql_url_with_other_libpq_parameters_works() -> None:
    """The parameters libpq's URLs carry beside `sslmode`, which asyncpg names otherwise or
    takes as server settings: each ended in `connect() got an unexpected keyword argument`."""
    from tests.conftest import new_postgres_database

    query = (
        "?sslmode=disable&connect_timeout=10&application_name=docuhooks-cli"
        "&options=-c%20statement_timeout%3D60000&target_session_attrs=read-write"
    )
    with new_postgres_database("docuhooks_libpq") as url:
        done = invoke("db", "upgrade", env={"DOCUHOOKS_DATABASE_URL": url + query})
        assert done.exit_code == 0, done.output
        assert "Traceback" not in done.output


def test_a_session_option_the_server_refuses_is_one_line() -> None:
    """`?options=-c nosuch=1` passes the settings (PostgreSQL alone knows its parameters)
    and the server refuses the session as it opens: one line naming the database and the
    server's reason, not the driver's traceback."""
    from tests.conftest import new_postgres_database

    with new_postgres_database("docuhooks_options") as url:
        done = invoke(
            "db", "upgrade", env={"DOCUHOOKS_DATABASE_URL": url + "?options=-c%20nosuch%3D1"}
        )
        assert done.exit_code == 1, done.output
        assert "Traceback" not in done.output
        assert 'unrecognized configuration parameter "nosuch"' in done.output
        assert "Check the URL's parameters" in done.output


def test_a_parameter_the_pooler_refuses_says_where_to_set_it_instead() -> None:
    """PgBouncer refuses `options` (and most server settings) as a start-up parameter: the
    one line names the parameter and says to set it on the role or database, rather than
    sending the operator to check that the server is running."""
    from tests.conftest import new_postgres_database
    from tests.pgbouncer import running_pgbouncer

    with (
        new_postgres_database("docuhooks_pooler_options") as url,
        running_pgbouncer(url, pool_size=1) as bouncer,
    ):
        pooled = bouncer.url_for(url) + "?options=-c%20statement_timeout%3D60000"
        done = invoke(
            "db",
            "upgrade",
            env={"DOCUHOOKS_DATABASE_URL": pooled, "DOCUHOOKS_DATABASE_POOLER": "transaction"},
        )
    assert done.exit_code == 1, done.output
    assert "Traceback" not in done.output
    assert "unsupported startup parameter: options" in done.output
    assert "ALTER ROLE" in done.output
    assert "server is running" not in done.output


_COMMANDS_WITH_A_DATABASE = [
    ("worker",),
    ("db", "upgrade"),
    ("admin", "create-site", "Acme", "--base-url", "https://acme.example"),
    ("admin", "create-token", "--login", "ann@acme.example"),
]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://app@db.internal/docuhooks?connect_timeout=5&foo=1",
            "Error: setting DOCUHOOKS_DATABASE_URL: parameter 'foo' is not one the PostgreSQL "
            "driver (asyncpg) takes; accepted: application_name, command_timeout, "
            "connect_timeout, database, dbname, gsslib, host, krbsrvname, options, passfile, "
            "password, port, prepared_statement_cache_size, service, servicefile, ssl, "
            "sslmode, target_session_attrs, user",
        ),
        (
            "postgresql://app@db.internal/docuhooks?sslrootcert=/etc/docuhooks/ca.pem",
            "Error: setting DOCUHOOKS_DATABASE_URL: parameter 'sslrootcert' is not one the "
            "PostgreSQL driver (asyncpg) takes in a URL; set the environment variable "
            "PGSSLROOTCERT instead, which it reads",
        ),
        (
            "sqlite:///docuhooks.db?timeout=5",
            "Error: setting DOCUHOOKS_DATABASE_URL: parameter 'timeout': an sqlite:/// URL "
            "takes no parameters (docuhooks sets SQLite's options itself; "
            "DOCUHOOKS_SQLITE_SYNCHRONOUS chooses its durability)",
        ),
    ],
)
def test_a_database_url_parameter_that_cannot_be_used_is_one_line_from_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    """Refused when the settings load, before anything connects or is created: the driver's
    `TypeError` (or, on SQLite, a warning and the parameter ignored) is gone."""
    monkeypatch.chdir(tmp_path)
    env = {"DOCUHOOKS_DATABASE_URL": url}
    for args in _COMMANDS_WITH_A_DATABASE:
        refused_in_one_line(invoke(*args, env=env), message)
    # A process of its own: a server that starts would not return.
    served = subprocess.run(
        [sys.executable, "-m", "docuhooks", "serve", "--port", str(free_port())],
        env={**os.environ, **env, "DOCUHOOKS_SECRET_KEY": "cli-test-key-0123456789ab"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (served.returncode, served.stderr) == (1, f"{message}\n")
    assert os.listdir(tmp_path) == [], "nothing was created"
