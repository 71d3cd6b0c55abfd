"""String, boolean and data readings (SenML ``vs``, ``vb``, ``vd``), stored beside the numbers.

A typed reading belongs to a series like a number does, (series, time) is its
key, and a redelivered value is stored once. Times are UTC microseconds, turned
into timestamptz exactly (integer arithmetic on an interval, never a float).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg

from storage.errors import map_errors

__all__ = ["insert_typed_readings", "typed_between", "typed_readings"]


def insert_typed_readings(conn: psycopg.Connection, series_id: Sequence[int], time_us: Sequence[int],
                          values: Sequence[str | bool | bytes]) -> int:
    """Insert the typed readings (a value's Python type picks its column); the number inserted."""
    if not series_id:
        return 0
    texts = [v if isinstance(v, str) else None for v in values]
    bools = [v if isinstance(v, bool) else None for v in values]
    datas = [bytes(v) if isinstance(v, (bytes, bytearray)) else None for v in values]
    with map_errors("insert typed readings"):
        cur = conn.execute(
            "INSERT INTO typed_readings (series_id, time, value_text, value_bool, value_data)"
            " SELECT k.sid, timestamptz 'epoch' + k.us * interval '1 microsecond', k.t, k.b, k.d"
            " FROM unnest(%s::integer[], %s::bigint[], %s::text[], %s::boolean[], %s::bytea[])"
            " AS k(sid, us, t, b, d)"
            " ON CONFLICT (series_id, time) DO NOTHING",
            (list(series_id), list(time_us), texts, bools, datas),
        )
        return cur.rowcount


def typed_readings(conn: psycopg.Connection, series_id: int) -> list[tuple[int, str | bool | bytes]]:
    """(time in UTC µs, value) of one series' typed readings, in time order."""
    with map_errors("read typed readings"):
        rows = conn.execute(
            "SELECT (extract(epoch FROM time - timestamptz 'epoch') * 1000000)::bigint,"
            " value_text, value_bool, value_data FROM typed_readings WHERE series_id = %s ORDER BY time",
            (series_id,),
        ).fetchall()
    return [(us, next(v for v in (t, b, d) if v is not None)) for us, t, b, d in rows]


def typed_between(conn: psycopg.Connection, series_id: int, start: datetime | None, end: datetime | None, *,
                  limit: int, newest_first: bool = False) -> list[tuple[datetime, str | bool | bytes]]:
    """(time, value) of one series' typed readings in [start, end) (open where None), oldest
    first, or the newest `limit` when `newest_first` (still returned oldest first)."""
    order = "DESC" if newest_first else "ASC"
    with map_errors("read typed readings"):
        rows = conn.execute(
            "SELECT time, value_text, value_bool, value_data FROM typed_readings WHERE series_id = %(series)s"
            " AND (%(start)s::timestamptz IS NULL OR time >= %(start)s)"
            " AND (%(end)s::timestamptz IS NULL OR time < %(end)s)"
            f" ORDER BY time {order} LIMIT %(limit)s",
            {"series": series_id, "start": start, "end": end, "limit": limit},
        ).fetchall()
    if newest_first:
        rows.reverse()
    return [(t, next(v for v in (text, flag, data) if v is not None)) for t, text, flag, data in rows]
