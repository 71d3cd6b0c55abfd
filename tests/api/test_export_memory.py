"""Exports stream: the API process's memory does not grow with the rows it sends."""

from __future__ import annotations

import pytest

from bench.export_bench import measure_export, seed, start_api
from citylab.embedded import free_port

pytestmark = pytest.mark.slow

ROWS = 400_000


def test_exports_stream_with_bounded_memory(database: str) -> None:
    key, sid = seed(database, ROWS)
    port = free_port()
    api = start_api(database, port)
    try:
        base = f"http://127.0.0.1:{port}"
        for fmt in ("csv", "parquet"):  # warm up: imports, pools, pyarrow's allocator
            measure_export(base, api.pid, key, sid, fmt)
        csv = measure_export(base, api.pid, key, sid, "csv")
        parquet = measure_export(base, api.pid, key, sid, "parquet")
    finally:
        api.kill()
        api.wait(10)
    assert csv["lines"] == ROWS + 1  # with the header
    # 400,000 rows are about 24 MB of CSV and would take well over 100 MB as Python rows
    assert csv["peak_growth_mb"] < 40, csv
    assert parquet["peak_growth_mb"] < 40, parquet
    assert parquet["bytes"] > 0
