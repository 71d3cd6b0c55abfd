"""The whole path from MQTT to committed rows, with the real broker and database.

Drained scenarios first let ingest create its persistent session, stop it, publish
every message (the broker queues them for the session), then start ingest and time
it until the last reading is committed: that is ingest's own limit, not the
publisher's. The live scenario runs publishers through the broker while ingest
runs, at an offered rate, and measures each pack's end-to-end lag: from just before
its PUBLISH to the first moment another database client sees it committed (ingest's
watermark row, written in the transaction of the readings, polled every 10 ms).
After every scenario a ledger check compares each published reading with the rows
in the database: `lost` and `duplicated` must be 0.

- `readings_per_s`: drained, packs of 100 readings from 1,000 devices;
- `messages_per_s`: drained, one reading per message;
- `live_*`: packs of 100 readings offered at `--live-rate` readings/s for
  `--live-seconds`, by `--live-publishers` concurrent clients; lag p50/p95/p99;
- `naive_readings_per_s` (the peer, same run, same broker and database): one paho
  subscriber that decodes each message and INSERTs its readings row by row,
  committing per message, on a sample.

Numba compiles (or loads from its cache) the stream kernels at their first call; the
benchmark makes that call before any timing starts and reports how long it took.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench._servers import private_servers
from ingest import IngestOptions, IngestService
from protocol.senml import Pack, Record, decode_pack, encode_pack
from protocol.topics import up_topic
from storage.migrate import migrate
from storage.registry import register_device

__all__ = ["add_arguments", "run"]

ORG = "bench"
T0 = 1_790_000_000.0
T0_SINGLE = T0 - 10_000_000.0  # each scenario writes its own time range: one ledger each
T0_LIVE = T0 - 20_000_000.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def add_arguments(parser) -> None:
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--packs-per-device", type=int, default=20, help="packs of 100 readings each")
    parser.add_argument("--single-messages", type=int, default=50_000, help="messages of one reading")
    parser.add_argument("--naive-messages", type=int, default=100, help="packs of 100 for the naive peer")
    parser.add_argument("--live-rate", type=int, default=50_000, help="readings/s offered in the live scenario")
    parser.add_argument("--live-seconds", type=float, default=20.0)
    parser.add_argument("--live-publishers", type=int, default=4)


def _client(port: int) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _messages(devices: int, per_device: int, readings: int, boot: str, t0: float = T0):
    """(topic, payload, readings) of `per_device` packs of every device, interleaved."""
    for seq in range(per_device):
        for d in range(devices):
            device = f"d{d:04d}"
            t = t0 + seq * readings
            # a periodic signal in exact binary fractions: realistic for the detector, exact for the ledger
            records = tuple(Record(f"{device}/temperature", 20.0 + ((seq * readings + i) % 64) * 0.125, t + i, "Cel")
                            for i in range(readings))
            yield up_topic(ORG, device), encode_pack(Pack(boot, seq, records)), readings


def _publish(port: int, messages) -> int:
    client = _client(port)
    sent = 0
    last = None
    for topic, payload, n in messages:
        last = client.publish(topic, payload, qos=1)
        sent += n
    last.wait_for_publish(120)
    client.loop_stop()
    client.disconnect()
    return sent


def _stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT value FROM ingest_counters WHERE name = 'readings_stored'").fetchone()[0]


def _ingest_scenario(url: str, broker_url: str, port: int, messages, expected: int, client_id: str) -> dict:
    options = IngestOptions(database_url=url, mqtt_url=broker_url, client_id=client_id, batch_max_age_ms=100)
    # 1. create the persistent session, then go away
    service = IngestService(options)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    service.client.connected.wait(20)
    time.sleep(0.5)
    stop.set()
    thread.join(20)
    # 2. publish everything while ingest is away
    before = _stored(url)
    publish_start = time.perf_counter()
    sent = _publish(port, messages)
    publish_s = time.perf_counter() - publish_start
    # 3. ingest drains the session: timed until the last reading is committed
    service = IngestService(options)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    service.client.connected.wait(60)  # the database side is ready before the broker connects
    start = time.perf_counter()
    deadline = start + 600
    while _stored(url) - before < expected and time.perf_counter() < deadline:
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    time.sleep(1.0)  # anything extra (duplicates) would arrive now
    stop.set()
    thread.join(20)
    return {"sent": sent, "elapsed_s": elapsed, "publish_s": publish_s,
            "messages": service.totals["packs_received"]}


def _ledger(url: str, devices: int, per_device: int, readings: int, t0: float = T0) -> tuple[int, int]:
    """(lost, duplicated) of one scenario's readings (those of `_messages` from `t0`), row by row in SQL.

    Rows of the scenario's time range that were never published count as duplicated.
    """
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "WITH expected AS ("
            "  SELECT 'd' || lpad(d::text, 4, '0') AS device, 20.0::float8 + (k %% 64) * 0.125::float8 AS v,"
            "         to_timestamp(%s + k) AS t"
            "  FROM generate_series(0, %s - 1) d, generate_series(0, %s - 1) k),"
            " got AS (SELECT s.device, r.value, r.time, count(*) AS n FROM readings r"
            "  JOIN series s ON s.id = r.series_id WHERE s.quantity = 'temperature'"
            "  AND r.time >= to_timestamp(%s) AND r.time < to_timestamp(%s) GROUP BY 1, 2, 3)"
            " SELECT (SELECT count(*) FROM expected e LEFT JOIN got g"
            "         ON g.device = e.device AND g.value = e.v AND g.time = e.t WHERE g.n IS NULL),"
            "        (SELECT coalesce(sum(n), 0) FROM got) - (SELECT count(*) FROM expected e JOIN got g"
            "         ON g.device = e.device AND g.value = e.v AND g.time = e.t)",
            (t0, devices, per_device * readings, t0, t0 + per_device * readings),
        ).fetchone()
    return int(row[0]), int(row[1])


def _warm_up(widths_s: tuple[int, ...]) -> float:
    """Compile (or load from Numba's cache) the stream kernels; seconds it took."""
    import numpy as np

    from stream import StreamProcessor

    start = time.perf_counter()
    StreamProcessor(widths_s=widths_s).process(np.zeros(64, np.int32), np.arange(64, dtype=np.int64) * 1_000_000,
                                               np.ones(64))
    return time.perf_counter() - start


def _live(url: str, broker_url: str, port: int, *, devices: int, rate: int, seconds: float,
          publishers: int) -> dict:
    """Publishers and ingest at the same time: throughput, lag percentiles, ledger."""
    import numpy as np

    readings = 100
    per_device = max(1, int(rate * seconds / readings / devices))
    total = per_device * devices
    published: dict[tuple[str, int], float] = {}
    seen: dict[tuple[str, int], float] = {}
    service = IngestService(IngestOptions(database_url=url, mqtt_url=broker_url, client_id="bench-ingest-live",
                                          batch_max_age_ms=50))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    if not service.client.connected.wait(60):
        raise RuntimeError("ingest did not subscribe")
    messages = list(_messages(devices, per_device, readings, "live", T0_LIVE))
    interval = readings / rate  # seconds between packs, over all publishers

    def publish(part: int) -> None:
        client = _client(port)
        start = time.perf_counter() + 0.2
        last = None
        for i in range(part, total, publishers):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            topic, payload, _ = messages[i]
            published[(topic.split("/")[2], i // devices)] = time.time()
            last = client.publish(topic, payload, qos=1)
        if last is not None:
            last.wait_for_publish(120)
        client.loop_stop()
        client.disconnect()

    threads = [threading.Thread(target=publish, args=(p,), daemon=True) for p in range(publishers)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    with psycopg.connect(url, autocommit=True) as watch:
        deadline = time.monotonic() + seconds + 300
        marks: dict[str, int] = {}
        while len(seen) < total and time.monotonic() < deadline:
            now = time.time()
            for device, seq in watch.execute(
                    "SELECT device, seq FROM ingest_watermarks WHERE boot_id = 'live'").fetchall():
                for s in range(marks.get(device, -1) + 1, seq + 1):
                    seen[(device, s)] = now
                marks[device] = max(marks.get(device, -1), seq)
            time.sleep(0.01)
    elapsed = time.perf_counter() - begin
    for t in threads:
        t.join(60)
    stop.set()
    thread.join(20)
    lags = np.array([seen[k] - published[k] for k in seen if k in published]) * 1000
    lost, duplicated = _ledger(url, devices, per_device, readings, T0_LIVE)
    p50, p95, p99 = np.percentile(lags, [50, 95, 99]) if len(lags) else (float("nan"),) * 3
    return {
        "live_offered_readings_per_s": rate,
        "live_readings_per_s": round(len(seen) * readings / elapsed),
        "live_readings": total * readings,
        "live_publishers": publishers,
        "live_lag_p50_ms": round(float(p50), 1),
        "live_lag_p95_ms": round(float(p95), 1),
        "live_lag_p99_ms": round(float(p99), 1),
        "live_lost": lost,
        "live_duplicated": duplicated,
    }


def _naive(url: str, port: int, packs: int) -> dict:
    """The peer: auto-acknowledging paho subscriber, row-by-row INSERTs, commit per message."""
    conn = psycopg.connect(url, autocommit=False)
    ids = dict(conn.execute("SELECT device, id FROM series WHERE quantity = 'temperature'").fetchall())
    done = threading.Event()
    counted = {"rows": 0, "messages": 0}

    def on_message(client, userdata, msg) -> None:
        device = msg.topic.split("/")[2]
        for record in decode_pack(msg.payload).records:
            conn.execute("INSERT INTO readings (time, series_id, value) VALUES (%s, %s, %s)",
                         (_EPOCH + timedelta(seconds=record.time), ids[device], record.value))
            counted["rows"] += 1
        conn.commit()
        counted["messages"] += 1
        if counted["messages"] == packs:
            done.set()

    sub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("naive/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)
    pub = _client(port)
    payloads = [(f"naive/{ORG}/d{i % 1000:04d}/up", encode_pack(Pack("naive", i, tuple(
        Record(f"d{i % 1000:04d}/temperature", float(k), T0 - 1e6 + i * 100 + k, "Cel") for k in range(100)))))
        for i in range(packs)]
    start = time.perf_counter()
    for topic, payload in payloads:
        pub.publish(topic, payload, qos=1)
    done.wait(600)
    elapsed = time.perf_counter() - start
    for client in (pub, sub):
        client.loop_stop()
        client.disconnect()
    conn.close()
    return {"naive_readings_per_s": round(counted["rows"] / elapsed), "naive_sample_readings": counted["rows"]}


def run(args) -> dict:
    with ExitStack() as stack:
        pg, broker = private_servers(stack, name="ingest", broker=True)
        with psycopg.connect(pg.url) as conn:
            migrate(conn)
            conn.autocommit = False
            for d in range(args.devices):
                register_device(conn, org=ORG, device=f"d{d:04d}", kind="sensor")
            conn.commit()

        jit_s = _warm_up((60,))  # before any timing: the kernels are compiled once per process
        packs = _ingest_scenario(
            pg.url, broker.url, broker.port, _messages(args.devices, args.packs_per_device, 100, "packs"),
            args.devices * args.packs_per_device * 100, "bench-ingest-packs")
        lost, duplicated = _ledger(pg.url, args.devices, args.packs_per_device, 100)

        single_devices = min(args.devices, args.single_messages)
        single_per_device = args.single_messages // single_devices
        single = _ingest_scenario(
            pg.url, broker.url, broker.port,
            _messages(single_devices, single_per_device, 1, "single", T0_SINGLE),
            single_per_device * single_devices, "bench-ingest-single")
        single_lost, single_duplicated = _ledger(pg.url, single_devices, single_per_device, 1, T0_SINGLE)
        live = _live(pg.url, broker.url, broker.port, devices=args.devices, rate=args.live_rate,
                     seconds=args.live_seconds, publishers=args.live_publishers)
        naive = _naive(pg.url, broker.port, args.naive_messages)

    return {
        "readings_per_s": round(packs["sent"] / packs["elapsed_s"]),
        "pack_readings": packs["sent"],
        "messages_per_s": round(single["sent"] / single["elapsed_s"]),
        "single_messages": single["sent"],
        "lost": lost,
        "duplicated": duplicated,
        "single_lost": single_lost,
        "single_duplicated": single_duplicated,
        **live,
        **naive,
        "jit_warmup_s": round(jit_s, 2),
        "method": "drained: messages queued in ingest's persistent session first, then drained (ingest's own "
                  "limit); live: publishers and ingest at once, lag from PUBLISH to committed as another database "
                  "client sees it; stream kernels compiled before any timing (jit_warmup_s, not in any figure)",
    }
