"""The seeded lab of the API tests: known rows, written with plain SQL.

Series 1 `air-042/pm2_5`: a reading every 7 s (plus a few microseconds) for
three hours from T0 with a level that changes per minute, and the 60 s
aggregates computed from exactly those rows with NumPy. Series 2
`air-042/no2`: three readings on the edges of [T0, T0 + 1 h). Series 3
`noise-7/laeq`: one NaN reading. Anomalies, dead letters and ingest counters
have a few rows each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOURS = 3
STEP = timedelta(seconds=7, microseconds=123)


@dataclass(frozen=True)
class Lab:
    url: str
    pm25: int
    no2: int
    noise: int
    times: np.ndarray   # datetime objects of series pm25, sorted
    values: np.ndarray  # float64


def _aggregate_rows(series_id: int, times: list[datetime], values: np.ndarray, width_s: int = 60) -> list[tuple]:
    keys = np.array([int(t.timestamp()) // width_s for t in times])
    rows = []
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        v = values[idx]
        last = idx[-1]  # times are sorted
        rows.append((
            width_s, series_id, datetime.fromtimestamp(int(key) * width_s, UTC), len(v), float(v.sum()),
            float(v.min()), float(v.max()), float(values[last]), times[last], float(((v - v.mean()) ** 2).sum()),
        ))
    return rows


def seed(url: str) -> Lab:
    rng = np.random.default_rng(20250301)
    n = int(HOURS * 3600 / STEP.total_seconds())
    times = [T0 + i * STEP for i in range(n)]
    level = 10 + 5 * np.sin(np.arange(n) // 9)  # the mean moves from minute to minute
    values = level + rng.normal(0, 2, n)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (device, org) VALUES ('air-042', 'lab'), ('noise-7', 'lab')")
        pm25, no2, noise = (
            conn.execute(
                "INSERT INTO series (org, device, quantity, unit) VALUES ('lab', %s, %s, %s) RETURNING id", row
            ).fetchone()[0]
            for row in (("air-042", "pm2_5", "ug/m3"), ("air-042", "no2", "ug/m3"), ("noise-7", "laeq", None))
        )
        with conn.cursor().copy("COPY readings (time, series_id, value) FROM STDIN") as copy:
            for t, v in zip(times, values):
                copy.write_row((t, pm25, float(v)))
        conn.cursor().executemany(
            "INSERT INTO readings (time, series_id, value) VALUES (%s, %s, %s)",
            [
                (T0, no2, 1.5),
                (T0 + timedelta(microseconds=123_456), no2, 2.5),
                (T0 + timedelta(hours=1), no2, 3.5),
                (T0 + timedelta(minutes=5), noise, float("nan")),
            ],
        )
        conn.cursor().executemany(
            "INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            _aggregate_rows(pm25, times, values),
        )
        conn.cursor().executemany(
            "INSERT INTO anomalies (time, series_id, value, score, kind) VALUES (%s, %s, %s, %s, %s)",
            [
                (T0 + timedelta(minutes=10), pm25, 99.0, 7.5, "spike"),
                (T0 + timedelta(minutes=20), no2, 0.0, 3.25, "stuck"),
                (T0 + timedelta(hours=1), pm25, 98.0, 6.0, "spike"),
            ],
        )
        conn.cursor().executemany(
            "INSERT INTO dead_letters (received_at, org, topic, device, reason, detail, payload)"
            " VALUES (%s, 'lab', %s, %s, %s, %s, %s)",
            [
                (T0, "lab/lab/air-042/up", "air-042", "undecodable", "not SenML", b"\x00\x01"),
                (T0 + timedelta(seconds=1), "lab/lab/ghost/up", None, "unknown_device", "no such device", b"{}"),
            ],
        )
        # every pack is the seeded organisation's: its counters are the lab's
        for name, value in (("packs_received", 12), ("packs_stored", 10), ("packs_dead_lettered", 2),
                            ("packs_duplicate", 3), ("readings_stored", n + 4)):
            conn.execute("UPDATE ingest_counters SET value = %s WHERE name = %s", (value, name))
            conn.execute("INSERT INTO ingest_org_counters (org, name, value) VALUES ('lab', %s, %s)", (name, value))
    return Lab(url, pm25, no2, noise, np.array(times, dtype=object), values)
