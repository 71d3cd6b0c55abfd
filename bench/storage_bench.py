"""Storage throughput: our COPY writer against the limit and the naive peer.

- `copy_rows_per_s`: `storage.timeseries.TimeSeriesWriter.write_readings` (numpy columns → binary COPY) into
  the indexed raw table, including the building of the COPY payload;
- `raw_copy_rows_per_s`: COPY of a payload built beforehand (the server's limit);
- `insert_rows_per_s`: psycopg `executemany` of INSERTs (the naive peer), on a sample.
"""

from __future__ import annotations

import time
from contextlib import ExitStack

import numpy as np
import psycopg

from storage.copy import readings_payload
from storage.migrate import migrate
from storage.db import capabilities
from storage.timeseries import TimeSeriesWriter

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=None,
                        help="an existing database to use (default: a private embedded cluster)")


def _batch(rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    series = rng.integers(1, 10_001, rows, dtype=np.int32)
    time_us = 1_790_000_000_000_000 + np.sort(rng.integers(0, 3_600_000_000, rows, dtype=np.int64))
    return series, time_us, rng.normal(20, 5, rows)


def _reset(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE readings")
    conn.commit()


def run(args) -> dict:
    return measure(rows=args.rows, database_url=args.database_url)


def measure(*, rows: int, database_url: str | None) -> dict:
    with ExitStack() as stack:
        if database_url is None:
            from bench._servers import private_servers

            server, _ = private_servers(stack, name="storage")
            database_url = server.url
        conn = stack.enter_context(psycopg.connect(database_url))
        migrate(conn)
        conn.autocommit = False
        series, time_us, value = _batch(rows)
        chunk = 100_000

        writer = TimeSeriesWriter(capabilities(conn))
        _reset(conn)
        start = time.perf_counter()
        for i in range(0, rows, chunk):
            writer.write_readings(conn, series[i:i + chunk], time_us[i:i + chunk], value[i:i + chunk])
            conn.commit()
        copy_s = time.perf_counter() - start

        payloads = [readings_payload(series[i:i + chunk], time_us[i:i + chunk], value[i:i + chunk])
                    for i in range(0, rows, chunk)]
        _reset(conn)
        start = time.perf_counter()
        for payload in payloads:
            with conn.cursor() as cur, cur.copy("COPY readings (time, series_id, value) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(payload)
            conn.commit()
        raw_s = time.perf_counter() - start

        sample = min(rows, 50_000)
        from datetime import datetime, timedelta, timezone

        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        params = [(epoch + timedelta(microseconds=int(t)), int(s), float(v))
                  for s, t, v in zip(series[:sample], time_us[:sample], value[:sample])]
        _reset(conn)
        start = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings (time, series_id, value) VALUES (%s, %s, %s)", params)
        conn.commit()
        insert_s = time.perf_counter() - start
        _reset(conn)

    copy_rate = rows / copy_s
    raw_rate = rows / raw_s
    return {
        "rows": rows,
        "copy_rows_per_s": round(copy_rate),
        "raw_copy_rows_per_s": round(raw_rate),
        "insert_rows_per_s": round(sample / insert_s),
        "writer_vs_raw_copy": round(copy_rate / raw_rate, 3),
        "insert_sample_rows": sample,
    }
