"""The NGSI-LD face beside `/v1`, in one run, over real HTTP to a `citylab api` process.

A private PostgreSQL holds a week of one-minute readings of one air-quality
device (10 080 readings) and their 60 s aggregates. Printed, as the median of
`--repeat` requests each:

* `GET /ngsi-ld/v1/temporal/entities/{id}` (normalized and temporalValues; 10 000
  instances, the 206 page) beside `GET /v1/series/{id}/readings` for the same week;
* hourly averages: `aggregatedValues` with `aggrPeriodDuration=PT1H` (answered from the
  stored aggregates) beside `GET /v1/series/{id}/aggregates?bucket=3600`;
* upserts: `POST /entityOperations/upsert` of `--batch` device entities (one pm25 each),
  readings/s, beside the ingest pipeline committing the same SenML packs directly.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack

import httpx
import numpy as np
import psycopg

from bench._servers import private_servers
from bench.export_bench import start_api
from citylab.embedded import free_port
from ingest import Message, Pipeline
from protocol.senml import SENML_JSON, Pack, Record, encode_pack
from storage.db import capabilities
from storage.migrate import migrate
from storage.registry import ensure_series, register_device
from storage.tenants import create_key, create_org
from storage.timeseries import TimeSeriesWriter

__all__ = ["add_arguments", "run"]

T0_US = 1_790_000_000_000_000   # 2026-09-21T...Z, minute-aligned
WEEK = 7 * 24 * 60
ENV = ('<https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld>; '
       'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"')


def add_arguments(parser) -> None:
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200, help="entities per upsert request")
    parser.add_argument("--devices", type=int, default=200)


def _iso(us: int) -> str:
    return np.datetime64(us, "us").astype(str) + "Z"


def seed(url: str, devices: int) -> tuple[str, str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        org = create_org(conn, name="NGSI-LD bench", kind="provider")
        _, key = create_key(conn, org_id=org.id, role="admin")
        register_device(conn, org=org.slug, device="air-week")
        for i in range(devices):
            register_device(conn, org=org.slug, device=f"air-{i:04d}")
        sid = ensure_series(conn, [(org.slug, "air-week", "pm2_5", "ug/m3")])[(org.slug, "air-week", "pm2_5")]
        conn.execute("UPDATE devices SET lat = 58.97, lon = 5.73")
    with psycopg.connect(url) as conn:
        writer = TimeSeriesWriter(capabilities(conn))
        time_us = T0_US + np.arange(WEEK, dtype=np.int64) * 60_000_000
        values = 10 + 5 * np.sin(np.arange(WEEK) / 90.0)
        writer.write_readings(conn, np.full(WEEK, sid, np.int32), time_us, values)
        conn.execute(
            "INSERT INTO aggregates (width_s, series_id, bucket, count, sum, min, max, last, last_time, m2)"
            " SELECT 60, series_id, date_bin('60 s', time, '1970-01-01'::timestamptz), count(*), sum(value),"
            " min(value), max(value), (array_agg(value ORDER BY time DESC))[1], max(time),"
            " coalesce(var_pop(value), 0) * count(*) FROM readings WHERE series_id = %s GROUP BY 1, 2, 3",
            (sid,))
        conn.commit()
    return org.slug, key, sid


def _median(fn, repeat: int) -> tuple[float, object]:
    times, last = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), last


def run(args) -> dict:
    with ExitStack() as stack:
        pg, _ = private_servers(stack, name="ngsild")
        org, key, sid = seed(pg.url, args.devices)
        port = free_port()
        api = start_api(pg.url, port)
        stack.callback(api.kill)
        client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                                  headers={"Authorization": f"Bearer {key}"}))
        start, end = _iso(T0_US), _iso(T0_US + WEEK * 60_000_000)
        entity = f"/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:AirQualityObserved:{org}:air-week"
        week = {"timerel": "between", "timeAt": start, "endTimeAt": end, "attrs": "pm25"}

        def get(path, params, headers=None):
            r = client.get(path, params=params, headers=headers or {})
            assert r.status_code in (200, 206), r.text[:300]
            return r

        get(entity, week, {"Link": ENV})  # warm imports, pools and context caches
        result: dict[str, object] = {"readings": WEEK}
        s, r = _median(lambda: get(entity, week, {"Link": ENV}), args.repeat)
        result["ngsild_temporal_normalized_s"] = round(s, 4)
        result["ngsild_temporal_instances"] = len(r.json()["pm25"])
        s, _ = _median(lambda: get(entity, {**week, "options": "temporalValues"}, {"Link": ENV}), args.repeat)
        result["ngsild_temporal_values_s"] = round(s, 4)
        s, r = _median(lambda: get(f"/v1/series/{sid}/readings", {"start": start, "end": end, "limit": 100_000}),
                       args.repeat)
        result["v1_readings_s"] = round(s, 4)
        result["v1_readings"] = r.json()["count"]
        hourly = {**week, "options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "PT1H"}
        s, r = _median(lambda: get(entity, hourly, {"Link": ENV}), args.repeat)
        result["ngsild_hourly_avg_s"] = round(s, 4)
        result["ngsild_hourly_buckets"] = len(r.json()["pm25"]["avg"])
        s, r = _median(lambda: get(f"/v1/series/{sid}/aggregates", {"start": start, "end": end, "bucket": "PT1H"}),
                       args.repeat)
        result["v1_hourly_aggregates_s"] = round(s, 4)

        def upsert(round_: int):
            at = _iso(T0_US + (WEEK + round_) * 60_000_000)
            batch = [{"id": f"urn:ngsi-ld:AirQualityObserved:{org}:air-{i:04d}", "type": "AirQualityObserved",
                      "pm25": {"type": "Property", "value": float(i % 50), "observedAt": at, "unitCode": "GQ"}}
                     for i in range(args.batch)]
            r = client.post("/ngsi-ld/v1/entityOperations/upsert", json=batch, headers={"Link": ENV})
            assert r.status_code == 204, r.text[:300]

        upsert(0)
        rounds = iter(range(1, 10_000))
        s, _ = _median(lambda: upsert(next(rounds)), args.repeat)
        result["ngsild_upsert_batch"] = args.batch
        result["ngsild_upsert_entities_per_s"] = round(args.batch / s)

        pipeline = Pipeline(pg.url)
        stack.callback(pipeline.close)

        def direct(round_: int):
            t = (T0_US + (2 * WEEK + round_) * 60_000_000) / 1e6
            messages = [Message(f"lab/{org}/air-{i:04d}/up", encode_pack(Pack("bench", round_ * 10_000 + i, (
                Record(f"air-{i:04d}/pm2_5", float(i % 50), t, "ug/m3"),)), content_type=SENML_JSON), 0, 1,
                SENML_JSON, int(time.time() * 1e6)) for i in range(args.batch)]
            pipeline.commit(messages)

        direct(0)
        rounds = iter(range(1, 10_000))
        s, _ = _median(lambda: direct(next(rounds)), args.repeat)
        result["pipeline_direct_packs_per_s"] = round(args.batch / s)
    return result
