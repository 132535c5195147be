"""What a database URL says: the server it reaches.

Pure: the settings check their URLs with it (`Settings`), and the store reads them with it
(`store.database`).
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

__all__ = ["read_url", "same_server"]


def read_url(url: str) -> URL:
    """`url` as SQLAlchemy reads it; ValueError, never quoting the URL (it may hold a
    password), where it cannot."""
    try:
        return make_url(url)
    except sa_exc.ArgumentError:
        raise ValueError("cannot be read as a URL (scheme://user@host/database)") from None
    except ValueError as exc:  # a port that is not a number
        raise ValueError(f"cannot be read as a URL: {exc}") from None


def same_server(one: str, other: str) -> bool:
    """Whether two PostgreSQL URLs reach the same host, port and database."""
    a, b = read_url(one), read_url(other)
    return (a.host, a.port or 5432, a.database) == (b.host, b.port or 5432, b.database)
