"""The store: one schema and one `Database` over SQLite (embedded) and PostgreSQL (scale-out)."""

from docuhooks.store.database import Database

__all__ = ["Database"]
