"""What the raw table holds just before given instants: the context a reading's flag depends on.

Several ingest workers on one shared subscription each see a share of a series' readings, so
a flag that depends on the readings before it (a gap, a stuck run, a new pattern) is checked
against what all workers stored (``ingest.context_flags``). One statement answers every
candidate of a batch: for each (series, instant) the times of the ``depth`` newest stored
readings before that instant, and how many of the ``run`` newest equal a given value.

A worker that starts, or meets a series for the first time, rebuilds the series' stream state
from its newest stored readings (``latest_readings``, replayed through its detector).
"""

from __future__ import annotations

import numpy as np
import psycopg

from storage.errors import map_errors

__all__ = ["NO_READING", "latest_readings", "preceding_readings"]

NO_READING = int(np.iinfo(np.int64).min)
"""The time in ``preceding_readings``'s matrix where fewer readings are stored."""

_PRECEDING = """
SELECT ARRAY(SELECT (extract(epoch FROM r.time) * 1000000)::bigint FROM readings r
             WHERE r.series_id = c.sid AND r.time < c.t ORDER BY r.time DESC LIMIT %(depth)s),
       (SELECT count(*) FROM (SELECT r.value FROM readings r
                              WHERE r.series_id = c.sid AND r.time < c.t ORDER BY r.time DESC LIMIT c.run) q
        WHERE q.value = c.x)
FROM unnest(%(sid)s::integer[], %(t)s::bigint[], %(x)s::float8[], %(run)s::integer[])
     WITH ORDINALITY AS u(sid, t_us, x, run, i),
     LATERAL (SELECT u.sid, 'epoch'::timestamptz + u.t_us * interval '1 microsecond' AS t, u.x, u.run) c
ORDER BY u.i
"""


def preceding_readings(
    conn: psycopg.Connection, series_id: np.ndarray, time_us: np.ndarray, *, depth: int,
    value: np.ndarray | None = None, run: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each (series_id[i], time_us[i]): the times (UTC µs, newest first) of the `depth` newest
    stored readings of the series strictly before time_us[i], as row i of an (n, depth) int64
    matrix padded with ``NO_READING``; and how many of the run[i] newest of them equal value[i]
    (0 where `run` is not given). One round trip, in the caller's transaction."""
    n = len(series_id)
    times = np.full((n, depth), NO_READING, np.int64)
    repeats = np.zeros(n, np.int64)
    if n == 0:
        return times, repeats
    value = np.zeros(n) if value is None else value
    run = np.zeros(n, np.int64) if run is None else run
    with map_errors("read preceding readings"):
        rows = conn.execute(_PRECEDING, {
            "sid": np.asarray(series_id).tolist(), "t": np.asarray(time_us).tolist(),
            "x": np.asarray(value, np.float64).tolist(), "run": np.asarray(run).tolist(), "depth": depth,
        }).fetchall()
    for i, (stored, equal) in enumerate(rows):
        times[i, :len(stored)] = stored
        repeats[i] = equal
    return times, repeats


_LATEST = """
SELECT u.sid, x.t_us, x.value
FROM unnest(%(sid)s::integer[]) AS u(sid)
CROSS JOIN LATERAL (SELECT (extract(epoch FROM r.time) * 1000000)::bigint AS t_us, r.value FROM readings r
                    WHERE r.series_id = u.sid ORDER BY r.time DESC LIMIT %(depth)s) AS x
"""


def latest_readings(conn: psycopg.Connection, series_id: np.ndarray, *, depth: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The `depth` newest stored readings of each series as columns (series_id int32, time_us
    int64, value float64) in (series, time) order: one round trip (an index probe per series),
    in the caller's transaction."""
    if len(series_id) == 0 or depth <= 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64)
    with map_errors("read latest readings"), conn.cursor(binary=True) as cur:
        rows = cur.execute(_LATEST, {"sid": np.asarray(series_id).tolist(), "depth": depth}).fetchall()
    sid = np.fromiter((r[0] for r in rows), np.int32, len(rows))
    time_us = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    value = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    order = np.lexsort((time_us, sid))
    return sid[order], time_us[order], value[order]
