"""Versioned, forward-only, idempotent migrations.

A migration version is a common file `NNNN_name.sql` plus, optionally, an
engine's part `NNNN_name.postgres.sql` or `NNNN_name.timescaledb.sql`; both run
in one transaction, in that order. The engine is chosen once, when the first
migration runs (TimescaleDB when the extension can be created here and is
wanted, plain PostgreSQL with native partitioning otherwise), and recorded in
`schema_info`, so that later versions always take the same engine's parts.

Migrations run under an advisory lock, so that two processes starting together
do not race. Afterwards the retention and compression settings are applied
(storage.retention), which is idempotent too.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from storage.db import ENGINES, Capabilities, capabilities
from storage.errors import MigrationError, map_errors
from storage.retention import RetentionPolicy, configure_policies

__all__ = ["Migration", "migrate", "migrations"]

logger = logging.getLogger("citylab.storage.migrate")

_LOCK_KEY = 0x63697479  # "city"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(postgres|timescaledb))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str                     # the common part
    engine_sql: dict[str, str]   # engine -> its part

    def script(self, engine: str) -> str:
        return self.sql + "\n" + self.engine_sql.get(engine, "")


def migrations() -> list[Migration]:
    common: dict[int, tuple[str, str]] = {}
    parts: dict[int, dict[str, str]] = {}
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        version, name, engine = int(match[1]), match[2], match[3]
        if engine is None:
            common[version] = (name, entry.read_text())
        else:
            parts.setdefault(version, {})[engine] = entry.read_text()
    missing = set(parts) - set(common)
    if missing:
        raise MigrationError(f"engine parts without a common migration file: versions {sorted(missing)}")
    return [Migration(v, common[v][0], common[v][1], parts.get(v, {})) for v in sorted(common)]


def migrate(
    conn: psycopg.Connection, *, use_timescaledb: bool = True, retention: RetentionPolicy | None = None,
    upto: int | None = None,
) -> list[Migration]:
    """Apply the pending migrations (up to version `upto`, default all); return those
    applied (empty when up to date)."""
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
            conn.execute("CREATE TABLE IF NOT EXISTS schema_info (key text PRIMARY KEY, value text NOT NULL)")
            engine = _engine(conn, capabilities(conn), use_timescaledb)
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for migration in migrations():
                if migration.version in done or (upto is not None and migration.version > upto):
                    continue
                try:
                    with conn.transaction():
                        conn.execute(migration.script(engine))
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (migration.version, migration.name),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} ({engine}) failed: {exc}",
                        sqlstate=exc.sqlstate,
                    ) from exc
                logger.info("applied migration %04d_%s (%s)", migration.version, migration.name, engine)
                applied.append(migration)
            configure_policies(conn, engine, retention or RetentionPolicy())
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def _engine(conn: psycopg.Connection, caps: Capabilities, use_timescaledb: bool) -> str:
    row = conn.execute("SELECT value FROM schema_info WHERE key = 'engine'").fetchone()
    if row:
        if row[0] == "timescaledb":
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return row[0]
    engine = "timescaledb" if (use_timescaledb and caps.timescaledb_available) else "postgres"
    if engine == "timescaledb":
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute("INSERT INTO schema_info (key, value) VALUES ('engine', %s)", (engine,))
    assert engine in ENGINES
    logger.info("storage engine: %s", engine)
    return engine
