"""Errors of the storage package.

    StorageError                 root; carries the SQLSTATE when PostgreSQL gave one
     ├── MigrationError          a migration could not be applied
     └── DatabaseUnavailable     the server cannot be reached (retry later)

psycopg's errors are translated at this package's boundary by `map_errors()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

__all__ = ["DatabaseUnavailable", "MigrationError", "StorageError", "map_errors"]


class StorageError(Exception):
    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class MigrationError(StorageError):
    pass


class DatabaseUnavailable(StorageError):
    pass


@contextmanager
def map_errors(what: str) -> Iterator[None]:
    """Re-raise psycopg errors met while doing `what` as StorageError."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"{what}: database unavailable: {exc}", sqlstate=exc.sqlstate) from exc
    except psycopg.Error as exc:
        raise StorageError(f"{what}: {exc}", sqlstate=exc.sqlstate) from exc
