"""Errors of the storage package.

    StorageError                 root; carries the SQLSTATE when PostgreSQL gave one
     ├── MigrationError          a migration could not be applied
     └── DatabaseUnavailable     the server cannot be reached or cannot serve now (retry later)

psycopg's errors are translated at this package's boundary by `map_errors()`, by
SQLSTATE class rather than by psycopg's exception type (psycopg files
program_limit_exceeded, 54000, under OperationalError too): unavailable means no
SQLSTATE at all (the connection is gone) or one of `TRANSIENT_CLASSES` /
`TRANSIENT_CODES`. Everything else is the data's or the query's fault, and retrying
it would fail the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

__all__ = ["TRANSIENT_CLASSES", "DatabaseUnavailable", "MigrationError", "StorageError", "is_transient", "map_errors"]

#: connection exception, transaction rollback (deadlock, serialization), insufficient
#: resources, operator intervention (shutdown, cancel), system error (I/O)
TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
TRANSIENT_CODES = frozenset({"55P03", "55006"})  # lock_not_available, object_in_use


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
    except psycopg.Error as exc:
        if is_transient(exc):
            raise DatabaseUnavailable(f"{what}: database unavailable: {exc}", sqlstate=exc.sqlstate) from exc
        raise StorageError(f"{what}: {exc}", sqlstate=exc.sqlstate) from exc


def is_transient(exc: psycopg.Error) -> bool:
    """Whether the same statement may succeed later (see the module docstring)."""
    if exc.sqlstate is None:
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return exc.sqlstate[:2] in TRANSIENT_CLASSES or exc.sqlstate in TRANSIENT_CODES
