"""Retention and compression, from the settings, on either engine.

TimescaleDB: compression (segment by series, order by time) and retention are
policies run by TimescaleDB's own jobs; `configure_policies` (re)sets them to the
settings' intervals. Plain PostgreSQL: `drop_expired_partitions` drops the daily
partitions that lie wholly before the retention horizon; ingest calls it
periodically and `citylab db retention` runs it by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from storage.errors import map_errors
from storage.partitions import TIME_TABLES, drop_partitions_before

__all__ = ["RetentionPolicy", "configure_policies", "drop_expired_partitions"]

logger = logging.getLogger("citylab.storage.retention")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep each table (None: forever) and when to compress (TimescaleDB)."""

    readings_days: int | None = 400
    aggregates_days: int | None = 3650
    anomalies_days: int | None = 3650
    compress_after_days: int = 7

    def days(self, table: str) -> int | None:
        return {"readings": self.readings_days, "aggregates": self.aggregates_days,
                "anomalies": self.anomalies_days}[table]


def configure_policies(conn: psycopg.Connection, engine: str, policy: RetentionPolicy) -> None:
    """Idempotent: on TimescaleDB replace the compression and retention policies; else nothing to set."""
    if engine != "timescaledb":
        return
    with map_errors("configure TimescaleDB policies"):
        for table in TIME_TABLES:
            if table != "anomalies":  # anomalies are few; not compressed
                conn.execute("SELECT remove_compression_policy(%s::regclass, if_exists => true)", (table,))
                conn.execute(
                    "SELECT add_compression_policy(%s::regclass, make_interval(days => %s))",
                    (table, policy.compress_after_days),
                )
            conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
            days = policy.days(table)
            if days is not None:
                conn.execute(
                    "SELECT add_retention_policy(%s::regclass, make_interval(days => %s))", (table, days)
                )


def drop_expired_partitions(
    conn: psycopg.Connection, policy: RetentionPolicy, *, now: datetime | None = None
) -> list[str]:
    """Plain PostgreSQL: drop the partitions past each table's horizon; returns their names."""
    now = now or datetime.now(timezone.utc)
    dropped: list[str] = []
    for table in TIME_TABLES:
        days = policy.days(table)
        if days is not None:
            dropped += drop_partitions_before(conn, table, now - timedelta(days=days))
    if dropped:
        logger.info("retention dropped %d partitions: %s", len(dropped), ", ".join(dropped))
    return dropped
