"""Plain PostgreSQL: daily partitions made ahead of the data, retention by dropping them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg

from storage.db import capabilities
from storage.partitions import list_partitions
from storage.retention import RetentionPolicy, drop_expired_partitions
from storage.timeseries import TimeSeriesWriter

DAY_US = 86_400_000_000
T0_US = 1_790_000_000_000_000 - 1_790_000_000_000_000 % DAY_US  # a midnight in 2026


def _writer(conn: psycopg.Connection) -> TimeSeriesWriter:
    caps = capabilities(conn)
    assert caps.engine == "postgres" and caps.copy_from_stdin
    return TimeSeriesWriter(caps)


def test_writer_creates_the_partitions_its_batch_needs(database: str) -> None:
    with psycopg.connect(database) as conn:
        writer = _writer(conn)
        time_us = T0_US + np.array([0, DAY_US // 2, DAY_US + 5, 3 * DAY_US - 1], dtype=np.int64)
        writer.write_readings(conn, np.ones(4, np.int32), time_us, np.arange(4.0))
        conn.commit()
        names = [p.name for p in list_partitions(conn) if p.table == "readings"]
        assert names == ["readings_p20260921", "readings_p20260922", "readings_p20260923"]
        counts = conn.execute("SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1 ORDER BY 1").fetchall()
        assert counts == [("readings_p20260921", 2), ("readings_p20260922", 1), ("readings_p20260923", 1)]
        assert conn.execute("SELECT count(*) FROM readings_default").fetchone()[0] == 0


def test_rows_caught_by_the_default_partition_move_to_their_day(database: str) -> None:
    day = datetime.fromtimestamp(T0_US / 1e6, timezone.utc)
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO readings VALUES (%s, 1, 1.0), (%s, 1, 2.0)", (day, day + timedelta(days=9)))
        writer = _writer(conn)
        writer.write_readings(conn, np.ones(1, np.int32), np.array([T0_US + 1], np.int64), np.array([3.0]))
        conn.commit()
        where = dict(conn.execute("SELECT value, tableoid::regclass::text FROM readings").fetchall())
    assert where == {1.0: "readings_p20260921", 2.0: "readings_default", 3.0: "readings_p20260921"}


def test_a_rolled_back_batch_does_not_leave_the_writer_believing_in_its_partitions(database: str) -> None:
    with psycopg.connect(database) as conn:
        writer = _writer(conn)
        writer.write_readings(conn, np.ones(1, np.int32), np.array([T0_US], np.int64), np.array([1.0]))
        conn.rollback()
        writer.rolled_back()
        writer.write_readings(conn, np.ones(1, np.int32), np.array([T0_US], np.int64), np.array([1.0]))
        conn.commit()
        assert [p.name for p in list_partitions(conn) if p.table == "readings"] == ["readings_p20260921"]


def test_retention_drops_whole_expired_partitions(database: str) -> None:
    now = datetime.now(timezone.utc)
    now_us = int(now.timestamp() * 1e6)
    with psycopg.connect(database) as conn:
        writer = _writer(conn)
        ages = np.array([0, 5, 20, 40, 41], dtype=np.int64)
        writer.write_readings(conn, np.ones(5, np.int32), now_us - ages * DAY_US, np.arange(5.0))
        conn.commit()
        dropped = drop_expired_partitions(conn, RetentionPolicy(readings_days=30), now=now)
        conn.commit()
        assert len(dropped) == 2 and all(name.startswith("readings_p") for name in dropped)
        kept = conn.execute("SELECT value FROM readings ORDER BY value").fetchall()
    assert [v for (v,) in kept] == [0.0, 1.0, 2.0]


def test_range_queries_scan_only_the_partitions_they_need(database: str) -> None:
    with psycopg.connect(database) as conn:
        writer = _writer(conn)
        time_us = T0_US + np.arange(10, dtype=np.int64) * DAY_US
        writer.write_readings(conn, np.ones(10, np.int32), time_us, np.arange(10.0))
        conn.commit()
        start = datetime.fromtimestamp(T0_US / 1e6, timezone.utc) + timedelta(days=2)
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT time, value FROM readings WHERE series_id = 1 AND time >= %s AND time < %s",
            (start, start + timedelta(days=1))).fetchall())
    assert "readings_p20260923" in plan
    assert "readings_p20260921" not in plan and "readings_p20260925" not in plan


def test_db_info_names_the_engine_and_lists_partitions(database: str) -> None:
    with psycopg.connect(database) as conn:
        _writer(conn).write_readings(conn, np.ones(1, np.int32), np.array([T0_US], np.int64), np.array([1.0]))
        conn.commit()
    env = {**os.environ, "CITYLAB_DATABASE_URL": database}
    out = subprocess.run([sys.executable, "-m", "citylab", "db", "info"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "native range partitions" in out.stdout
    assert "readings_p20260921" in out.stdout
