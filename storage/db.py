"""Connections and what the server can do (TimescaleDB or plain PostgreSQL)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

from storage.errors import map_errors

__all__ = ["ENGINES", "Capabilities", "capabilities", "connect", "engine_of"]

logger = logging.getLogger("citylab.storage")

ENGINES = ("postgres", "timescaledb")


def connect(url: str, *, autocommit: bool = False, application_name: str = "citylab") -> psycopg.Connection:
    with map_errors("connect"):
        return psycopg.connect(url, autocommit=autocommit, application_name=application_name, connect_timeout=10)


@dataclass(frozen=True, slots=True)
class Capabilities:
    server_version: int              # e.g. 150020
    timescaledb_available: bool      # the extension can be created here
    timescaledb_version: str | None  # installed in this database
    engine: str | None               # the schema's engine (schema_info), None before the first migration
    copy_from_stdin: bool            # COPY FROM STDIN works over this connection

    @property
    def description(self) -> str:
        if self.engine == "timescaledb":
            return f"TimescaleDB {self.timescaledb_version} (hypertables, compression, retention policies)"
        if self.engine == "postgres":
            note = "; TimescaleDB could be used" if self.timescaledb_available else "; TimescaleDB not installed"
            return f"PostgreSQL {self.server_version // 10000} (native range partitions{note})"
        return "not migrated yet"


def capabilities(conn: psycopg.Connection) -> Capabilities:
    with map_errors("detect capabilities"):
        version = conn.info.server_version
        available = conn.execute(
            "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()[0]
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        engine = None
        if conn.execute("SELECT to_regclass('schema_info') IS NOT NULL").fetchone()[0]:
            found = conn.execute("SELECT value FROM schema_info WHERE key = 'engine'").fetchone()
            engine = found[0] if found else None
        # PGlite (PostgreSQL compiled to WebAssembly) serves the wire protocol but not
        # COPY FROM STDIN; the writer then sends its columns as arrays instead.
        wasm = "emscripten" in conn.execute("SELECT version()").fetchone()[0].lower()
    return Capabilities(version, bool(available), row[0] if row else None, engine, not wasm)


_ENGINES: dict[tuple[str, int, str], str] = {}


def engine_of(conn: psycopg.Connection) -> str:
    """The schema's engine, "timescaledb" or "postgres"; fixed at the first migration, so cached per database."""
    key = (conn.info.host, conn.info.port, conn.info.dbname)
    engine = _ENGINES.get(key)
    if engine is None:
        with map_errors("schema engine"):
            row = conn.execute("SELECT value FROM schema_info WHERE key = 'engine'").fetchone()
        engine = row[0] if row else "postgres"
        _ENGINES[key] = engine
    return engine
