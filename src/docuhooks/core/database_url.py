"""What a database URL's query parameters may say, and what the driver takes them as.

PostgreSQL URLs are mostly written for libpq (psql, hosted services' dashboards):
``?sslmode=require&connect_timeout=10&application_name=billing``. SQLAlchemy hands a URL's
query to ``asyncpg.connect()`` as keyword arguments, all of them strings, and asyncpg names
several of libpq's parameters otherwise, takes some only as server settings, and has no
keyword for others: each ended in a ``TypeError`` at start. Here each parameter is read the
way libpq reads it and given to asyncpg under its own keyword (`postgres_connect_args`), or
refused in one line that names it and says what is accepted. An SQLite URL takes none:
docuhooks sets SQLite's options itself.

Pure: the settings check a URL with it (`Settings`), and the store builds its engines with
what it returns (`store.database`), so what starts is what was checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

__all__ = ["KEPT_IN_URL", "PARAMETERS", "connect_args", "read_url", "same_server"]

#: Read by SQLAlchemy from the URL itself (a host or several, for failover), not passed on.
KEPT_IN_URL = frozenset({"host", "port"})

_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
_GSS_LIBRARIES = ("gssapi", "sspi")


def _text(_name: str, value: str) -> str:
    return value


def _one_of(choices: Sequence[str]) -> Callable[[str, str], str]:
    def read(name: str, value: str) -> str:
        if value not in choices:
            raise ValueError(f"parameter {name}={value!r}: expected one of {', '.join(choices)}")
        return value

    return read


def _connect_timeout(name: str, value: str) -> float | None:
    """libpq's reading: whole seconds; 0 or less waits as long as it takes (None to asyncpg,
    whose default would otherwise be 60 s)."""
    try:
        seconds = int(value.strip())
    except ValueError:
        raise ValueError(
            f"parameter {name}={value!r}: expected a whole number of seconds"
        ) from None
    return float(seconds) if seconds > 0 else None


def _positive_seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise ValueError(f"parameter {name}={value!r}: expected a number of seconds over 0")
    return seconds


def _count(name: str, value: str) -> int:
    if not re.fullmatch(r"\s*[0-9]+\s*", value):
        raise ValueError(f"parameter {name}={value!r}: expected a whole number, 0 or more")
    return int(value)


#: Each parameter asyncpg can be given: the keyword it goes to (``server_settings.<name>``:
#: a setting of the session, sent when it starts, as libpq sends it), and how its value is
#: read. libpq's names and asyncpg's own (``ssl``, ``database``), both.
PARAMETERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "sslmode": ("ssl", _one_of(_SSL_MODES)),
    "ssl": ("ssl", _one_of(_SSL_MODES)),
    "connect_timeout": ("timeout", _connect_timeout),
    "application_name": ("server_settings.application_name", _text),
    "options": ("server_settings.options", _text),
    "target_session_attrs": ("target_session_attrs", _one_of(_SESSION_ATTRS)),
    "dbname": ("database", _text),
    "database": ("database", _text),
    "user": ("user", _text),
    "password": ("password", _text),
    "passfile": ("passfile", _text),
    "service": ("service", _text),
    "servicefile": ("servicefile", _text),
    "krbsrvname": ("krbsrvname", _text),
    "gsslib": ("gsslib", _one_of(_GSS_LIBRARIES)),
    "command_timeout": ("command_timeout", _positive_seconds),
    # SQLAlchemy's own (its asyncpg dialect takes it out before asyncpg sees it).
    "prepared_statement_cache_size": ("prepared_statement_cache_size", _count),
}

#: libpq's parameters asyncpg has no keyword for, but reads from libpq's environment variable.
_FROM_ENVIRONMENT = {
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "sslnegotiation": "PGSSLNEGOTIATION",
}

Query = Mapping[str, str | Sequence[str]]


def read_url(url: str) -> URL:
    """`url` as SQLAlchemy reads it; ValueError, never quoting the URL (it may hold a
    password), where it cannot."""
    try:
        return make_url(url)
    except sa_exc.ArgumentError:
        raise ValueError("cannot be read as a URL (scheme://user@host/database)") from None
    except ValueError as exc:  # a port that is not a number
        raise ValueError(f"cannot be read as a URL: {exc}") from None


def connect_args(url: str) -> dict[str, Any]:
    """The driver's keyword arguments for `url`'s query parameters (none for SQLite, which
    takes no parameters). Raises ValueError, one line naming the parameter, for one that
    cannot be used."""
    parsed = read_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_query(parsed.query)
        return {}
    return postgres_connect_args(parsed.query)


def same_server(one: str, other: str) -> bool:
    """Whether two PostgreSQL URLs reach the same host, port and database."""
    a, b = read_url(one), read_url(other)
    return (a.host, a.port or 5432, a.database) == (b.host, b.port or 5432, b.database)


def postgres_connect_args(query: Query) -> dict[str, Any]:
    """``asyncpg.connect()``'s keyword arguments for a ``postgresql://`` URL's query (as
    SQLAlchemy's `URL.query` holds it), `KEPT_IN_URL` left out. Raises ValueError, in one
    line naming the parameter, for one asyncpg has no equivalent for, a value it cannot
    take, or two parameters that say the same thing."""
    args: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for name, raw in query.items():
        if name in KEPT_IN_URL:
            continue
        if name not in PARAMETERS:
            raise ValueError(_unknown(name))
        if not isinstance(raw, str):
            raise ValueError(f"parameter {name} is given {len(raw)} times; give it once")
        keyword, read = PARAMETERS[name]
        if keyword in given_as:
            raise ValueError(
                f"parameters {given_as[keyword]} and {name} say the same thing; give one"
            )
        given_as[keyword] = name
        value = read(name, raw)
        if keyword.startswith("server_settings."):
            args.setdefault("server_settings", {})[keyword.partition(".")[2]] = value
        else:
            args[keyword] = value
    return args


def _check_sqlite_query(query: Query) -> None:
    """Raise ValueError naming the first parameter of an ``sqlite://`` URL, which takes none
    (SQLAlchemy's SQLite driver would warn and ignore most, and take a few that docuhooks's
    own connection set-up then overrides)."""
    for name in query:
        raise ValueError(
            f"parameter {name!r}: an sqlite:/// URL takes no parameters (docuhooks sets "
            "SQLite's options itself; DOCUHOOKS_SQLITE_SYNCHRONOUS chooses its durability)"
        )


def _unknown(name: str) -> str:
    variable = _FROM_ENVIRONMENT.get(name)
    if variable is not None:
        return (
            f"parameter {name!r} is not one the PostgreSQL driver (asyncpg) takes in a URL; "
            f"set the environment variable {variable} instead, which it reads"
        )
    accepted = ", ".join(sorted([*PARAMETERS, *KEPT_IN_URL]))
    return (
        f"parameter {name!r} is not one the PostgreSQL driver (asyncpg) takes; accepted: {accepted}"
    )
