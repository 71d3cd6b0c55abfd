"""Writing columnar batches: raw readings, aggregate partials and anomalies.

Readings and aggregate partials go in with binary COPY built from numpy arrays
(storage.copy). Where the server cannot take COPY FROM STDIN over the wire (the
PGlite test engine), the same columns travel as array parameters of one
`INSERT ... SELECT FROM unnest(...)` instead. On plain PostgreSQL the daily
partitions a batch needs are created first (storage.partitions).

Aggregate partials are merged into the stored windows, so late and replayed
readings correct the windows they fall into:

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

from storage.copy import AGGREGATE_COLUMNS, aggregates_payload, anomalies_payload, readings_payload
from storage.db import Capabilities
from storage.errors import map_errors
from storage.partitions import PartitionMaker

__all__ = ["PartialAggregates", "TimeSeriesWriter"]

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


_MERGE_SET = """
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
_COLUMNS = ", ".join(AGGREGATE_COLUMNS)
_MERGE_FROM_TEMP = f"INSERT INTO aggregates AS a ({_COLUMNS}) SELECT {_COLUMNS} FROM aggregate_partials" + _MERGE_SET
_MERGE_FROM_ARRAYS = (
    f"INSERT INTO aggregates AS a ({_COLUMNS}) SELECT * FROM unnest("
    "%s::integer[], %s::integer[], %s::timestamptz[], %s::bigint[], %s::float8[], %s::float8[],"
    " %s::float8[], %s::float8[], %s::timestamptz[], %s::float8[])" + _MERGE_SET
)


# Rows per statement on the array path: PGlite's wire server fails on larger
# Bind messages, and nothing else takes this path.
_ARRAY_ROWS = 256


def _timestamps(time_us: np.ndarray) -> list[datetime]:
    return [_UNIX_EPOCH + timedelta(microseconds=t) for t in time_us.tolist()]


class TimeSeriesWriter:
    """Writes batches on one engine; keeps the partitions it knows exist."""

    def __init__(self, caps: Capabilities) -> None:
        self.partitioned = caps.engine == "postgres"
        self.use_copy = caps.copy_from_stdin
        self.partitions = PartitionMaker()

    def rolled_back(self) -> None:
        """Call after a failed transaction: partitions it created were rolled back too."""
        self.partitions.forget()

    def write_readings(self, conn: psycopg.Connection, series_id: np.ndarray, time_us: np.ndarray,
                       value: np.ndarray) -> int:
        """Append a batch to the raw table; returns the row count."""
        if len(series_id) == 0:
            return 0
        if self.partitioned:
            self.partitions.ensure(conn, "readings", time_us)
        with map_errors("write readings"), conn.cursor() as cur:
            if self.use_copy:
                with cur.copy("COPY readings (time, series_id, value) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(readings_payload(series_id, time_us, value))
            else:
                for i in range(0, len(series_id), _ARRAY_ROWS):
                    part = slice(i, i + _ARRAY_ROWS)
                    cur.execute(
                        "INSERT INTO readings (time, series_id, value)"
                        " SELECT * FROM unnest(%s::timestamptz[], %s::integer[], %s::float8[])",
                        (_timestamps(time_us[part]), series_id[part].tolist(), value[part].tolist()),
                    )
        return len(series_id)

    def merge_aggregates(self, conn: psycopg.Connection, partials: Sequence[PartialAggregates]) -> int:
        """Merge the partials of one batch (at most one row per window and series each)."""
        partials = [p for p in partials if len(p.series_id)]
        if not partials:
            return 0
        if self.partitioned:
            for part in partials:
                self.partitions.ensure(conn, "aggregates", part.bucket)
        merged = 0
        # in one transaction (a savepoint inside the caller's), also on an autocommit
        # connection: the temporary table's rows live until the commit
        with map_errors("merge aggregates"), conn.transaction(), conn.cursor() as cur:
            if not self.use_copy:
                for p in partials:
                    for i in range(0, len(p.series_id), _ARRAY_ROWS):
                        r = slice(i, i + _ARRAY_ROWS)
                        cur.execute(_MERGE_FROM_ARRAYS, (
                            [p.width_s] * len(p.series_id[r]), p.series_id[r].tolist(), _timestamps(p.bucket[r]),
                            p.count[r].tolist(), p.sum[r].tolist(), p.min[r].tolist(), p.max[r].tolist(),
                            p.last[r].tolist(), _timestamps(p.last_time[r]), p.m2[r].tolist()))
                        merged += cur.rowcount
                return merged
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS aggregate_partials"
                " (LIKE aggregates INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            with cur.copy(f"COPY aggregate_partials ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(aggregates_payload([(p.width_s, {
                    "series_id": p.series_id, "bucket": p.bucket, "count": p.count, "sum": p.sum,
                    "min": p.min, "max": p.max, "last": p.last, "last_time": p.last_time, "m2": p.m2,
                }) for p in partials]))
            cur.execute(_MERGE_FROM_TEMP)
            merged = cur.rowcount
            cur.execute("TRUNCATE aggregate_partials")
        return merged

    def insert_anomalies(
        self, conn: psycopg.Connection, series_id: np.ndarray, time_us: np.ndarray, value: np.ndarray,
        score: np.ndarray, kinds: Sequence[str],
    ) -> int:
        """Anomalies are usually rare, but a misbehaving sensor can flag every reading: COPY too."""
        if len(series_id) == 0:
            return 0
        if self.partitioned:
            self.partitions.ensure(conn, "anomalies", time_us)
        with map_errors("insert anomalies"), conn.cursor() as cur:
            if self.use_copy:
                with cur.copy("COPY anomalies (time, series_id, value, score, kind) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.write(anomalies_payload(series_id, time_us, value, score, np.asarray(kinds, dtype=object)))
            else:
                for i in range(0, len(series_id), _ARRAY_ROWS):
                    r = slice(i, i + _ARRAY_ROWS)
                    cur.execute(
                        "INSERT INTO anomalies (time, series_id, value, score, kind) SELECT * FROM unnest("
                        "%s::timestamptz[], %s::integer[], %s::float8[], %s::float8[], %s::text[])",
                        (_timestamps(time_us[r]), series_id[r].tolist(), value[r].tolist(), score[r].tolist(),
                         list(kinds[r])),
                    )
        return len(series_id)
