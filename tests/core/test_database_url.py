"""A database URL's query parameters as people write them (libpq's names, from psql and hosted
services' dashboards), given to asyncpg under the keywords it takes, or refused in one line
naming the parameter: before, every name asyncpg does not take ended in a TypeError."""

from __future__ import annotations

import pytest

from docuhooks.core.database_url import connect_args

BASE = "postgresql://app:pw@db.internal:5432/docuhooks"


def test_libpq_parameters_reach_asyncpg_under_its_own_keywords() -> None:
    query = (
        "?sslmode=verify-full&connect_timeout=7&application_name=billing"
        "&options=-c%20statement_timeout%3D5000&target_session_attrs=read-write"
        "&dbname=other&passfile=/etc/pgpass&gsslib=gssapi&krbsrvname=pg"
    )
    assert connect_args(BASE + query) == {
        "ssl": "verify-full",
        "timeout": 7.0,
        "server_settings": {"application_name": "billing", "options": "-c statement_timeout=5000"},
        "target_session_attrs": "read-write",
        "database": "other",
        "passfile": "/etc/pgpass",
        "gsslib": "gssapi",
        "krbsrvname": "pg",
    }


def test_asyncpg_and_sqlalchemy_names_that_worked_before_still_do() -> None:
    """Passed through as they were, typed now: asyncpg's `ssl` and `command_timeout`,
    SQLAlchemy's `prepared_statement_cache_size`; the host and port stay in the URL, where
    SQLAlchemy reads them (one host or several)."""
    query = "?ssl=require&command_timeout=30&prepared_statement_cache_size=0&host=a,b&port=1,2"
    assert connect_args(BASE + query) == {
        "ssl": "require",
        "command_timeout": 30.0,
        "prepared_statement_cache_size": 0,
    }


def test_a_connect_timeout_of_zero_waits_as_libpq_does() -> None:
    # libpq: "zero, negative, or not specified means wait indefinitely"; asyncpg's own
    # default (60 s) applies only when the parameter is not given.
    assert connect_args(BASE + "?connect_timeout=0") == {"timeout": None}
    assert connect_args(BASE + "?connect_timeout=-3") == {"timeout": None}
    assert connect_args(BASE) == {}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "?foo=1",
            "parameter 'foo' is not one the PostgreSQL driver (asyncpg) takes; accepted: "
            "application_name, command_timeout, connect_timeout, database, dbname, gsslib, "
            "host, krbsrvname, options, passfile, password, port, "
            "prepared_statement_cache_size, service, servicefile, ssl, sslmode, "
            "target_session_attrs, user",
        ),
        (
            "?sslrootcert=/etc/ca.pem",
            "parameter 'sslrootcert' is not one the PostgreSQL driver (asyncpg) takes in a "
            "URL; set the environment variable PGSSLROOTCERT instead, which it reads",
        ),
        (
            "?sslmode=required",
            "parameter sslmode='required': expected one of disable, allow, prefer, require, "
            "verify-ca, verify-full",
        ),
        ("?connect_timeout=5s", "parameter connect_timeout='5s': expected a whole number of"),
        (
            "?target_session_attrs=master",
            "parameter target_session_attrs='master': expected one of any, primary, standby",
        ),
        ("?command_timeout=0", "parameter command_timeout='0': expected a number of seconds"),
        ("?sslmode=require&ssl=disable", "parameters sslmode and ssl say the same thing"),
        ("?application_name=a&application_name=b", "parameter application_name is given 2 times"),
    ],
)
def test_a_parameter_that_cannot_be_used_is_named(query: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        connect_args(BASE + query)
    assert str(refused.value).startswith(message), refused.value
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize("query", ["?foo=1", "?timeout=5", "?mode=ro&uri=true"])
def test_an_sqlite_url_takes_no_parameters(query: str) -> None:
    """SQLAlchemy's SQLite driver warned about most and ignored them, and took `timeout`,
    which docuhooks's connection set-up then overrides (no busy handler)."""
    with pytest.raises(ValueError, match="an sqlite:/// URL takes no parameters"):
        connect_args("sqlite:////var/lib/docuhooks/docuhooks.db" + query)
    assert connect_args("sqlite:////var/lib/docuhooks/docuhooks.db") == {}


def test_a_url_that_cannot_be_read_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="cannot be read as a URL") as refused:
        connect_args("postgresql://app:secret@db.internal:port/docuhooks")
    assert "secret" not in str(refused.value)
