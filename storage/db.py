"""Connections and what the server can do (TimescaleDB or plain PostgreSQL)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from storage.errors import map_errors

__all__ = ["Capabilities", "capabilities", "connect"]

logger = logging.getLogger("citylab.storage")


def connect(url: str, *, autocommit: bool = False, application_name: str = "citylab") -> psycopg.Connection:
    with map_errors("connect"):
        return psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=10)


@dataclass(frozen=True, slots=True)
class Capabilities:
    server_version: int          # e.g. 150020
    timescaledb_available: bool  # the extension can be created here
    timescaledb_version: str | None  # installed in this database

    @property
    def engine(self) -> str:
        if self.timescaledb_version:
            return f"TimescaleDB {self.timescaledb_version}"
        return "PostgreSQL (native partitioning; TimescaleDB not installed)"


def capabilities(conn: psycopg.Connection) -> Capabilities:
    with map_errors("detect capabilities"):
        version = conn.info.server_version
        available = conn.execute(
            "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()[0]
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return Capabilities(version, bool(available), row[0] if row else None)
