"""The check that stored aggregates equal those computed from the raw table."""

from __future__ import annotations

import numpy as np
import psycopg

__all__ = ["assert_aggregates_equal_raw"]


def assert_aggregates_equal_raw(conn: psycopg.Connection, *, width_s: int = 60, at_least: int = 1) -> int:
    """Every stored window of `width_s` equals the aggregate of the raw readings in it
    (count exact, sum, min, max, last and m2 within 1e-9); returns how many windows."""
    stored = conn.execute(
        "SELECT series_id, extract(epoch FROM bucket)::bigint, count, sum, min, max, last, m2"
        " FROM aggregates WHERE width_s = %s ORDER BY 1, 2", (width_s,)).fetchall()
    raw = conn.execute(
        "SELECT series_id, extract(epoch FROM date_bin(make_interval(secs => %s), time, timestamptz 'epoch'))::bigint,"
        " count(*), sum(value), min(value), max(value),"
        " (array_agg(value ORDER BY time DESC))[1], var_pop(value) * count(*)"
        " FROM readings GROUP BY 1, 2 ORDER BY 1, 2", (width_s,)).fetchall()
    assert len(stored) == len(raw) >= at_least, (len(stored), len(raw))
    for got, want in zip(stored, raw):
        assert got[:3] == want[:3]
        np.testing.assert_allclose(got[3:], want[3:], rtol=1e-9, atol=1e-9)
    return len(stored)
