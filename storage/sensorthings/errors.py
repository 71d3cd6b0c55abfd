"""Errors of the SensorThings queries.

    QueryError            the query cannot mean anything here (HTTP 400)
     └── NotSupported     a valid construct this server does not implement (HTTP 501)
"""

from __future__ import annotations

from storage.errors import StorageError

__all__ = ["NotSupported", "QueryError"]


class QueryError(StorageError):
    """A query option that is not valid for this entity set."""


class NotSupported(QueryError):
    """A valid query construct this server does not implement."""
