"""What the raw table holds just before given instants: the context a reading's flag depends on.

Several ingest workers on one shared subscription each see a share of a series' readings, so
a flag that depends on the readings before it (a gap, a stuck run, a new pattern) is checked
against what all workers stored (``ingest.context_flags``). One statement answers every
candidate of a batch: for each (series, instant) the times of the ``depth`` newest stored
readings before that instant, and how many of the ``run`` newest equal a given value.
"""

from __future__ import annotations

import numpy as np
import psycopg

from storage.errors import map_errors

__all__ = ["NO_READING", "preceding_readings"]

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
