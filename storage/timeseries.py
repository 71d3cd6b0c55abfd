"""Writing columnar batches: raw readings, aggregate partials and anomalies.

Readings and aggregate partials go in with binary COPY built from numpy arrays
(storage.copy). Aggregate partials are merged into the stored windows, so late
and replayed readings correct the windows they fall into:

    count = count_a + count_b            sum = sum_a + sum_b
    min   = least(min_a, min_b)          max = greatest(max_a, max_b)
    last  = the one with the later last_time (ties: the newer partial)
    m2    = m2_a + m2_b + delta² · count_a · count_b / count,
            delta = mean_b − mean_a      (Chan et al., parallel variance)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Protocol

import numpy as np
import psycopg

from storage.copy import AGGREGATE_COLUMNS, aggregates_payload, readings_payload
from storage.errors import map_errors

__all__ = ["PartialAggregates", "insert_anomalies", "merge_aggregates", "write_readings"]

_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class PartialAggregates(Protocol):
    """What stream.Aggregates provides (kept structural: storage does not import stream)."""

    width_s: int
    series_id: np.ndarray
    bucket: np.ndarray
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    last: np.ndarray
    last_time: np.ndarray
    m2: np.ndarray


def write_readings(conn: psycopg.Connection, series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray) -> int:
    """COPY a batch into the raw table; returns the row count."""
    if len(series_id) == 0:
        return 0
    payload = readings_payload(series_id, time_us, value)
    with map_errors("copy readings"), conn.cursor() as cur:
        with cur.copy("COPY readings (time, series_id, value) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
    return len(series_id)


_MERGE = """
INSERT INTO aggregates AS a ({columns})
SELECT {columns} FROM aggregate_partials
ON CONFLICT (width_s, series_id, bucket) DO UPDATE SET
    count = a.count + excluded.count,
    sum = a.sum + excluded.sum,
    min = least(a.min, excluded.min),
    max = greatest(a.max, excluded.max),
    last = CASE WHEN excluded.last_time >= a.last_time THEN excluded.last ELSE a.last END,
    last_time = greatest(a.last_time, excluded.last_time),
    m2 = a.m2 + excluded.m2
        + power(excluded.sum / excluded.count - a.sum / a.count, 2)
          * a.count * excluded.count / (a.count + excluded.count)
"""


def merge_aggregates(conn: psycopg.Connection, partials: Sequence[PartialAggregates]) -> int:
    """Merge the partials of one batch (at most one row per window and series each)."""
    partials = [p for p in partials if len(p.series_id)]
    if not partials:
        return 0
    columns = ", ".join(AGGREGATE_COLUMNS)
    with map_errors("merge aggregates"), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS aggregate_partials"
            " (LIKE aggregates INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(f"COPY aggregate_partials ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            for part in partials:
                copy.write(aggregates_payload(part.width_s, {
                    "series_id": part.series_id, "bucket": part.bucket, "count": part.count, "sum": part.sum,
                    "min": part.min, "max": part.max, "last": part.last, "last_time": part.last_time,
                    "m2": part.m2,
                }))
        cur.execute(_MERGE.format(columns=columns))
        merged = cur.rowcount
        cur.execute("TRUNCATE aggregate_partials")
    return merged


def insert_anomalies(
    conn: psycopg.Connection, series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray, score: np.ndarray,
    kinds: Sequence[str],
) -> int:
    """Anomalies are rare: a text COPY row by row is fine here."""
    if len(series_id) == 0:
        return 0
    with map_errors("insert anomalies"), conn.cursor() as cur:
        with cur.copy("COPY anomalies (time, series_id, value, score, kind) FROM STDIN") as copy:
            for sid, t, v, s, k in zip(series_id.tolist(), time_us.tolist(), value.tolist(), score.tolist(), kinds):
                copy.write_row((_UNIX_EPOCH + timedelta(microseconds=t), sid, v, s, k))
    return len(series_id)
