"""Versioned, forward-only, idempotent migrations.

Migrations are the numbered `.sql` files in `storage/migrations/`, applied in
order, each in its own transaction, under an advisory lock so that two processes
starting together do not race. After the files, the time-series tables become
hypertables when TimescaleDB can be used.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from storage.db import Capabilities, capabilities
from storage.errors import MigrationError, map_errors

__all__ = ["Migration", "migrate", "migrations"]

logger = logging.getLogger("citylab.storage.migrate")

_LOCK_KEY = 0x63697479  # "city"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
HYPERTABLES = {"readings": "time", "anomalies": "time"}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg.Connection, *, use_timescaledb: bool = True) -> list[Migration]:
    """Apply the pending migrations; return those applied (empty when up to date)."""
    applied: list[Migration] = []
    conn.autocommit = True
    with map_errors("migrate"):
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations():
                if migration.version in done:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.sql)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (migration.version, migration.name),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} failed: {exc}", sqlstate=exc.sqlstate
                    ) from exc
                logger.info("applied migration %04d_%s", migration.version, migration.name)
                applied.append(migration)
            if use_timescaledb:
                _make_hypertables(conn, capabilities(conn))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def _make_hypertables(conn: psycopg.Connection, caps: Capabilities) -> None:
    if not caps.timescaledb_available:
        return
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    for table, column in HYPERTABLES.items():
        conn.execute(
            "SELECT create_hypertable(%s::regclass, %s::name, chunk_time_interval => interval '1 day',"
            " if_not_exists => true, migrate_data => true)",
            (table, column),
        )
