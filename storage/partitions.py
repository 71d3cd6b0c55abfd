"""Daily range partitions of the time-series tables on plain PostgreSQL.

The writer calls `PartitionMaker.ensure()` with the times of a batch before it
writes them, so a partition always exists ahead of its data. Ingest first calls
`PartitionMaker.ensure_ahead()` on an autocommit connection: each partition is then
created in a transaction of its own, so that a batch spanning many days never holds
the locks of all its new partitions at once (PostgreSQL's lock table is shared
memory), and a concurrent worker creating the same day is no error. Partitions are
named `<table>_pYYYYMMDD` and cover one UTC day, [day, day + 1). Each table also
has a default partition, so that a row written by other means is never refused;
when the day's partition is created, the rows the default caught for that day
move into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
from psycopg import sql

from storage.errors import map_errors

__all__ = ["TIME_TABLES", "Chunk", "Partition", "PartitionMaker", "drop_partitions_before", "list_chunks",
           "list_partitions"]

TIME_TABLES = ("readings", "aggregates", "anomalies")
DAY_US = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Partition:
    table: str
    name: str
    start: datetime
    end: datetime
    bytes: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A TimescaleDB chunk."""

    table: str
    name: str
    start: datetime
    end: datetime
    bytes: int
    compressed: bool


def list_chunks(conn: psycopg.Connection) -> list[Chunk]:
    """The chunks of the time-series hypertables (TimescaleDB only)."""
    with map_errors("list chunks"):
        rows = conn.execute(
            "SELECT c.hypertable_name, c.chunk_schema || '.' || c.chunk_name, c.range_start, c.range_end,"
            " pg_total_relation_size(format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass), c.is_compressed"
            " FROM timescaledb_information.chunks c WHERE c.hypertable_name = ANY(%s)"
            " ORDER BY c.hypertable_name, c.range_start",
            (list(TIME_TABLES),),
        ).fetchall()
    return [Chunk(*row) for row in rows]


def _name(table: str, day: int) -> str:
    return f"{table}_p{(_EPOCH + timedelta(days=day)):%Y%m%d}"


@dataclass
class PartitionMaker:
    """Creates missing daily partitions; remembers those it has seen."""

    known: dict[str, set[int]] = field(default_factory=dict)

    def ensure(self, conn: psycopg.Connection, table: str, time_us: np.ndarray) -> int:
        """Create the partitions `time_us` falls into; returns how many were created."""
        if len(time_us) == 0:
            return 0
        seen = self.known.setdefault(table, set())
        days = np.unique(np.floor_divide(time_us, DAY_US)).tolist()
        missing = [d for d in days if d not in seen]
        created = 0
        with map_errors(f"create partitions of {table}"):
            for day in missing:
                created += _create(conn, table, day)
                seen.add(day)
        return created

    def ensure_ahead(self, conn: psycopg.Connection, table: str, time_us: np.ndarray) -> int:
        """As `ensure`, on an autocommit connection, one committed transaction per partition."""
        if len(time_us) == 0:
            return 0
        seen = self.known.setdefault(table, set())
        days = np.unique(np.floor_divide(time_us, DAY_US)).tolist()
        created = 0
        with map_errors(f"create partitions of {table}"):
            for day in days:
                if day in seen:
                    continue
                try:
                    with conn.transaction():
                        created += _create(conn, table, day)
                except (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
                    # another worker created it first; at the same moment PostgreSQL reports the
                    # name's row type (pg_type) as the duplicate
                    pass
                seen.add(day)
        return created

    def forget(self) -> None:
        """After a rolled-back transaction the partitions it created are gone again."""
        self.known.clear()


def _create(conn: psycopg.Connection, table: str, day: int) -> int:
    """Create the day's partition, moving any rows the default partition caught for that day into it."""
    name = _name(table, day)
    if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]:
        return 0
    start = _EPOCH + timedelta(days=day)
    column = "bucket" if table == "aggregates" else "time"
    ident, parent, default = sql.Identifier(name), sql.Identifier(table), sql.Identifier(f"{table}_default")
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(ident, parent))
    conn.execute(
        sql.SQL("WITH moved AS (DELETE FROM {} WHERE {col} >= %s AND {col} < %s RETURNING *)"
                " INSERT INTO {} SELECT * FROM moved").format(default, ident, col=sql.Identifier(column)),
        (start, start + timedelta(days=1)),
    )
    conn.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            parent, ident, sql.Literal(start), sql.Literal(start + timedelta(days=1)))
    )
    return 1


def list_partitions(conn: psycopg.Connection) -> list[Partition]:
    with map_errors("list partitions"):
        rows = conn.execute(
            "SELECT parent.relname, child.relname, pg_get_expr(child.relpartbound, child.oid),"
            " pg_total_relation_size(child.oid)"
            " FROM pg_inherits i JOIN pg_class parent ON parent.oid = i.inhparent"
            " JOIN pg_class child ON child.oid = i.inhrelid"
            " WHERE parent.relname = ANY(%s) AND child.relname NOT LIKE '%%\\_default' ORDER BY 1, 2",
            (list(TIME_TABLES),),
        ).fetchall()
    out = []
    for table, name, bound, size in rows:
        start, end = _bounds(bound)
        out.append(Partition(table, name, start, end, size))
    return out


def _bounds(expr: str) -> tuple[datetime, datetime]:
    # "FOR VALUES FROM ('2026-11-23 00:00:00+00') TO ('2026-11-24 00:00:00+00')"
    parts = expr.split("'")
    return datetime.fromisoformat(parts[1]), datetime.fromisoformat(parts[3])


def drop_partitions_before(conn: psycopg.Connection, table: str, horizon: datetime) -> list[str]:
    """Drop the partitions of `table` that end at or before `horizon`."""
    dropped = []
    with map_errors(f"drop expired partitions of {table}"):
        for part in list_partitions(conn):
            if part.table == table and part.end <= horizon:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part.name)))
                dropped.append(part.name)
    return dropped
