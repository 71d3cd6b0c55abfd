"""Exports of millions of rows with bounded memory: the API process's peak RSS while it streams.

A private PostgreSQL holds `--rows` readings of one series; `citylab api` runs as its
own process; the export is downloaded over real HTTP and discarded chunk by chunk.
Printed: rows/s and the growth of the API process's peak RSS (VmHWM) for CSV and for
Parquet, and, from the same run, the naive peer's peak RSS growth: a process that
fetches the same rows with `fetchall()` and writes the CSV in memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import psycopg

from bench._servers import private_servers
from citylab.embedded import free_port
from storage.db import capabilities
from storage.migrate import migrate
from storage.registry import ensure_series, register_device
from storage.tenants import create_key, create_org
from storage.timeseries import TimeSeriesWriter

__all__ = ["add_arguments", "measure_export", "run"]

T0_US = 1_790_000_000_000_000

_NAIVE = """
import csv, io, resource, sys, psycopg
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with psycopg.connect(sys.argv[1]) as conn:
    rows = conn.execute("SELECT r.series_id, s.device, s.quantity, s.unit, r.time, r.value FROM readings r"
                        " JOIN series s ON s.id = r.series_id ORDER BY r.time").fetchall()
out = io.StringIO()
csv.writer(out).writerows(rows)
print(len(rows), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--no-peer", action="store_true", help="skip the naive peer")


def _vm(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # MB
    raise KeyError(field)


def seed(url: str, rows: int) -> tuple[str, int]:
    """Readings of one series of a provider; returns the provider's API key and the series id."""
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        org = create_org(conn, name=f"Export bench {os.getpid()}", kind="provider")
        _, key = create_key(conn, org_id=org.id, role="admin")
        register_device(conn, org=org.slug, device="bench-meter")
        sid = ensure_series(conn, [(org.slug, "bench-meter", "energy", "kWh")])[(org.slug, "bench-meter", "energy")]
    with psycopg.connect(url) as conn:
        writer = TimeSeriesWriter(capabilities(conn))
        for i in range(0, rows, 500_000):
            n = min(500_000, rows - i)
            time_us = T0_US + (i + np.arange(n, dtype=np.int64)) * 1_000_000
            writer.write_readings(conn, np.full(n, sid, np.int32), time_us, np.cumsum(np.ones(n)) + i)
            conn.commit()
    return key, sid


def measure_export(api: str, pid: int, key: str, sid: int, fmt: str) -> dict:
    """Download one export; the API process's peak RSS growth while it streamed."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    baseline = _vm(pid, "VmRSS")
    start = time.perf_counter()
    size = lines = 0
    with httpx.stream("GET", f"{api}/v1/exports/readings", timeout=600, headers={"Authorization": f"Bearer {key}"},
                      params={"format": fmt, "series_id": sid, "start": "2020-01-01T00:00:00Z",
                              "end": "2030-01-01T00:00:00Z"}) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "bytes": size, "lines": lines, "peak_growth_mb": _vm(pid, "VmHWM") - baseline}


def start_api(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "CITYLAB_DATABASE_URL": url, "CITYLAB_API_PORT": str(port),
           "CITYLAB_API_HOST": "127.0.0.1", "CITYLAB_BROKER_DYNSEC": "false"}
    env.pop("CITYLAB_MQTT_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "citylab", "api"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the API did not start")
        time.sleep(0.2)


def run(args) -> dict:
    with ExitStack() as stack:
        pg, _ = private_servers(stack, name="export")
        key, sid = seed(pg.url, args.rows)
        port = free_port()
        api = start_api(pg.url, port)
        stack.callback(api.kill)
        base = f"http://127.0.0.1:{port}"
        # warm the process (imports, pools, pyarrow's allocator) so that the baseline is the steady one
        measure_export(base, api.pid, key, sid, "csv")
        measure_export(base, api.pid, key, sid, "parquet")
        csv = measure_export(base, api.pid, key, sid, "csv")
        parquet = measure_export(base, api.pid, key, sid, "parquet")
        result = {
            "rows": args.rows,
            "csv_rows_per_s": round(args.rows / csv["seconds"]),
            "csv_mb": round(csv["bytes"] / 1e6, 1),
            "csv_api_peak_rss_growth_mb": round(csv["peak_growth_mb"], 1),
            "parquet_rows_per_s": round(args.rows / parquet["seconds"]),
            "parquet_mb": round(parquet["bytes"] / 1e6, 1),
            "parquet_api_peak_rss_growth_mb": round(parquet["peak_growth_mb"], 1),
        }
        if not args.no_peer:
            out = subprocess.run([sys.executable, "-c", _NAIVE, pg.url], capture_output=True, text=True, check=True)
            rows, growth = out.stdout.split()
            result["naive_fetchall_peak_rss_growth_mb"] = round(float(growth), 1)
    return result
