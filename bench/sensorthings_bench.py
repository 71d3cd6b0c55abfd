"""SensorThings reads against the /v1 readings endpoint, in the same run.

A private PostgreSQL holds `--rows` readings of one series (one a second) and
`--things` more devices with two series each (a reading a minute for an hour);
`citylab api` runs as its own process. Measured over real HTTP:

* STA: every Observation of the big Datastream in a time window, page by page
  (`$top=10000`, `$filter` on phenomenonTime, following `@iot.nextLink`);
* /v1: the same readings from `/v1/series/{id}/readings?limit=10000`, following
  `next_cursor`;
* STA: `Things?$expand=Datastreams($expand=Observations($top=1;$orderby=phenomenonTime desc))`,
  the latest Observation of every Datastream, Things per second.
"""

from __future__ import annotations

import re
import time
from contextlib import ExitStack

import httpx
import numpy as np
import psycopg

from bench._servers import private_servers
from bench.export_bench import start_api
from citylab.embedded import free_port
from storage.db import capabilities
from storage.migrate import migrate
from storage.registry import ensure_series, register_device
from storage.tenants import create_key, create_org
from storage.timeseries import TimeSeriesWriter

__all__ = ["add_arguments", "run"]

T0_US = 1_790_000_000_000_000
PAGE = 10_000


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=500_000, help="readings of the big Datastream")
    parser.add_argument("--things", type=int, default=200, help="further devices for the $expand")


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us / 1e6)) + "Z"


def seed(url: str, rows: int, things: int) -> tuple[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        org = create_org(conn, name="STA bench", kind="provider")
        _, key = create_key(conn, org_id=org.id, role="admin")
        register_device(conn, org=org.slug, device="bench-air")
        big = ensure_series(conn, [(org.slug, "bench-air", "pm2_5", "ug/m3")])[(org.slug, "bench-air", "pm2_5")]
        for i in range(things):
            register_device(conn, org=org.slug, device=f"bench-{i:04d}")
        small = ensure_series(conn, [(org.slug, f"bench-{i:04d}", q, u) for i in range(things)
                                     for q, u in (("temperature", "Cel"), ("humidity", "%RH"))])
    with psycopg.connect(url) as conn:
        writer = TimeSeriesWriter(capabilities(conn))
        for i in range(0, rows, 500_000):
            n = min(500_000, rows - i)
            time_us = T0_US + (i + np.arange(n, dtype=np.int64)) * 1_000_000
            writer.write_readings(conn, np.full(n, big, np.int32), time_us, np.sin(np.arange(n) / 100.0) + 10)
            conn.commit()
        ids = np.repeat(np.array(sorted(small.values()), np.int32), 60)
        minutes = np.tile(np.arange(60, dtype=np.int64), len(small))
        writer.write_readings(conn, ids, T0_US + minutes * 60_000_000, minutes.astype(np.float64))
        conn.commit()
        conn.execute("ANALYZE")
        conn.commit()
    return key, big


_NEXT_LINK = re.compile(rb'"@iot\.nextLink":"([^"]+)"')
_NEXT_CURSOR = re.compile(rb'"next_cursor":"([^"]+)"')


def sta_pages(client: httpx.Client, base: str, series: int, start: str, end: str) -> int:
    """Observations served, page by page. The pages are counted, not decoded: the figure is the
    server's, not the client's JSON parser's (the same for /v1 below)."""
    url = f"{base}/sta/v1.1/Datastreams({series})/Observations"
    params: dict | None = {"$top": str(PAGE), "$orderby": "phenomenonTime",
                           "$filter": f"phenomenonTime ge {start} and phenomenonTime lt {end}"}
    served = 0
    while url:
        body = client.get(url, params=params).raise_for_status().content
        served += body.count(b'"@iot.id":')
        following = _NEXT_LINK.search(body[-400:])
        url, params = (following[1].decode() if following else None), None
    return served


def v1_pages(client: httpx.Client, base: str, series: int, start: str, end: str) -> int:
    params = {"start": start, "end": end, "limit": str(PAGE)}
    served = 0
    while True:
        body = client.get(f"{base}/v1/series/{series}/readings", params=params).raise_for_status().content
        served += body.count(b'"time":')
        cursor = _NEXT_CURSOR.search(body[:2000])
        if not cursor:
            return served
        params = {**params, "cursor": cursor[1].decode()}


def _timed(fn, *args) -> tuple[int, float]:
    start = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - start


def run(args) -> dict:
    with ExitStack() as stack:
        pg, _ = private_servers(stack, name="sensorthings")
        key, series = seed(pg.url, args.rows, args.things)
        port = free_port()
        api = start_api(pg.url, port)
        stack.callback(api.kill)
        base = f"http://127.0.0.1:{port}"
        client = stack.enter_context(httpx.Client(timeout=600, headers={"Authorization": f"Bearer {key}"}))
        start, end = _iso(T0_US), _iso(T0_US + args.rows * 1_000_000)
        sta_pages(client, base, series, start, _iso(T0_US + PAGE * 1_000_000))   # warm both paths
        v1_pages(client, base, series, start, _iso(T0_US + PAGE * 1_000_000))
        sta_n, sta_s = _timed(sta_pages, client, base, series, start, end)
        v1_n, v1_s = _timed(v1_pages, client, base, series, start, end)
        expand = {"$top": "1000", "$expand": "Datastreams($expand=Observations($top=1;$orderby=phenomenonTime desc))"}
        client.get(f"{base}/sta/v1.1/Things", params=expand).raise_for_status()
        t = time.perf_counter()
        body = client.get(f"{base}/sta/v1.1/Things", params=expand).raise_for_status().json()
        expand_s = time.perf_counter() - t
        latest = sum(len(d["Observations"]) for thing in body["value"] for d in thing["Datastreams"])
    return {
        "rows": args.rows,
        "sta_observations": sta_n,
        "sta_observations_per_s": round(sta_n / sta_s),
        "v1_readings": v1_n,
        "v1_readings_per_s": round(v1_n / v1_s),
        "expand_things": len(body["value"]),
        "expand_latest_observations": latest,
        "expand_seconds": round(expand_s, 3),
    }
