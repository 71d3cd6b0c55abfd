"""The binary COPY writer: what goes in comes back exactly."""

from __future__ import annotations

import numpy as np
import psycopg

from storage.copy import PG_EPOCH_US
from storage.db import capabilities
from storage.timeseries import TimeSeriesWriter


def test_readings_round_trip_to_the_microsecond(database: str) -> None:
    rng = np.random.default_rng(5)
    time_us = 1_790_000_000_000_000 + rng.integers(0, 10 * 86_400_000_000, 5000)
    value = np.concatenate([rng.normal(0, 1e6, 4995), [0.0, -0.0, 1e-300, -1e300, 5e-324]])
    series = rng.integers(1, 50, 5000).astype(np.int32)
    with psycopg.connect(database) as conn:
        TimeSeriesWriter(capabilities(conn)).write_readings(conn, series, time_us, value)
        conn.commit()
        rows = conn.execute(
            "SELECT series_id, (extract(epoch FROM time - timestamptz '2000-01-01Z') * 1e6)::bigint, value"
            " FROM readings").fetchall()
    got = sorted((s, t + PG_EPOCH_US, v) for s, t, v in rows)
    want = sorted(zip(series.tolist(), time_us.tolist(), value.tolist()))
    assert got == want


def test_anomalies_of_several_kinds_round_trip(database: str) -> None:
    kinds = np.array(["spike", "gap", "spike", "out_of_range", "level_shift", "stuck"], dtype=object)
    n = len(kinds)
    with psycopg.connect(database) as conn:
        TimeSeriesWriter(capabilities(conn)).insert_anomalies(
            conn, np.arange(n, dtype=np.int32), 1_790_000_000_000_000 + np.arange(n, dtype=np.int64),
            np.arange(n) * 1.5, np.linspace(0, 1, n), kinds)
        conn.commit()
        rows = conn.execute("SELECT series_id, value, score, kind FROM anomalies ORDER BY series_id").fetchall()
    assert rows == [(i, i * 1.5, float(np.linspace(0, 1, n)[i]), str(kinds[i])) for i in range(n)]
