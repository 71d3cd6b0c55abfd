"""Streaming reads of raw readings for exports: bounded memory however many rows.

`copy_readings_csv` streams one series' readings as CSV lines straight out of
PostgreSQL (`COPY ... TO STDOUT`), times as ISO 8601 UTC. `iter_readings_chunks`
fetches one series through a server-side cursor in chunks of `chunk_rows`
rows, as numpy arrays (time in UTC microseconds, value), for columnar formats.
Either holds one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import psycopg
from psycopg import sql

from storage.errors import map_errors

__all__ = ["CSV_COLUMNS", "copy_readings_csv", "iter_readings_chunks"]

_CHUNK_BYTES = 256 * 1024

CSV_COLUMNS = ("series_id", "device", "quantity", "unit", "time", "value")

_CSV = sql.SQL(
    "COPY (SELECT r.series_id, s.device, s.quantity, s.unit,"
    " to_char(r.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), r.value"
    " FROM readings r JOIN series s ON s.id = r.series_id"
    " WHERE r.series_id = {series} AND r.time >= {start} AND r.time < {end} ORDER BY r.time, r.value)"
    " TO STDOUT WITH (FORMAT csv)"
)


def copy_readings_csv(conn: psycopg.Connection, series_id: int, start: datetime, end: datetime) -> Iterator[bytes]:
    """CSV lines (no header) of one series' readings in [start, end), oldest first."""
    statement = _CSV.format(series=sql.Literal(int(series_id)), start=sql.Literal(start), end=sql.Literal(end))
    # COPY hands out one row per read: gather them into chunks of about 256 kB, so the
    # HTTP layer sends (and the client receives) large writes, not one per row.
    pending: list[bytes] = []
    size = 0
    with map_errors("export readings as CSV"), conn.cursor() as cur, cur.copy(statement) as copy:
        for data in copy:
            pending.append(bytes(data))
            size += len(data)
            if size >= _CHUNK_BYTES:
                yield b"".join(pending)
                pending, size = [], 0
    if pending:
        yield b"".join(pending)


def iter_readings_chunks(
    conn: psycopg.Connection, series_id: int, start: datetime, end: datetime, *, chunk_rows: int = 65_536
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(time_us int64, value float64) chunks of one series in [start, end), oldest first.

    Needs a connection outside autocommit's single statements: the named
    cursor lives in a transaction of its own, closed at the end.
    """
    with map_errors("export readings"), conn.transaction(), conn.cursor(name=f"export_{series_id}") as cur:
        cur.itersize = chunk_rows
        cur.execute(
            "SELECT (extract(epoch FROM time) * 1000000)::bigint, value FROM readings"
            " WHERE series_id = %s AND time >= %s AND time < %s ORDER BY time, value",
            (series_id, start, end),
        )
        while True:
            rows = cur.fetchmany(chunk_rows)
            if not rows:
                return
            times = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            values = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
            yield times, values
