"""The whole path from MQTT to committed rows, with the real broker and database.

Each scenario first lets ingest create its persistent session, stops it, publishes
every message (the broker queues them for the session), then starts ingest and
times it until the last reading is committed: that is ingest's own limit, not the
publisher's. Afterwards a ledger check compares every published reading with
the rows in the database: `lost` and `duplicated` must both be 0.

- `readings_per_s`: packs of 100 readings from 1,000 devices;
- `messages_per_s`: one reading per message;
- `naive_readings_per_s` (the peer, same run, same broker and database): one paho
  subscriber that decodes each message and INSERTs its readings row by row,
  committing per message, on a sample.
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
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def add_arguments(parser) -> None:
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--packs-per-device", type=int, default=20, help="packs of 100 readings each")
    parser.add_argument("--single-messages", type=int, default=50_000, help="messages of one reading")
    parser.add_argument("--naive-messages", type=int, default=100, help="packs of 100 for the naive peer")


def _client(port: int) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def _messages(devices: int, per_device: int, readings: int, boot: str):
    """(topic, payload, readings) of `per_device` packs of every device, interleaved."""
    for seq in range(per_device):
        for d in range(devices):
            device = f"d{d:04d}"
            t = T0 + seq * readings
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


def _ledger(url: str, devices: int, per_device: int, readings: int) -> tuple[int, int]:
    """(lost, duplicated) of the pack scenario's readings, checked row by row in SQL."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "WITH expected AS ("
            "  SELECT 'd' || lpad(d::text, 4, '0') AS device, 20.0::float8 + (k %% 64) * 0.125::float8 AS v,"
            "         to_timestamp(%s + k) AS t"
            "  FROM generate_series(0, %s - 1) d, generate_series(0, %s - 1) k),"
            " got AS (SELECT s.device, r.value, r.time, count(*) AS n FROM readings r"
            "  JOIN series s ON s.id = r.series_id WHERE s.quantity = 'temperature'"
            "  GROUP BY 1, 2, 3)"
            " SELECT count(*) FILTER (WHERE g.n IS NULL), coalesce(sum(g.n - 1), 0)"
            " FROM expected e LEFT JOIN got g ON g.device = e.device AND g.value = e.v AND g.time = e.t",
            (T0, devices, per_device * readings),
        ).fetchone()
    return int(row[0]), int(row[1])


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

        packs = _ingest_scenario(
            pg.url, broker.url, broker.port, _messages(args.devices, args.packs_per_device, 100, "packs"),
            args.devices * args.packs_per_device * 100, "bench-ingest-packs")
        lost, duplicated = _ledger(pg.url, args.devices, args.packs_per_device, 100)

        single_devices = min(args.devices, args.single_messages)
        single = _ingest_scenario(
            pg.url, broker.url, broker.port,
            _messages(single_devices, args.single_messages // single_devices, 1, "single"),
            (args.single_messages // single_devices) * single_devices, "bench-ingest-single")
        naive = _naive(pg.url, broker.port, args.naive_messages)

    return {
        "readings_per_s": round(packs["sent"] / packs["elapsed_s"]),
        "pack_readings": packs["sent"],
        "messages_per_s": round(single["sent"] / single["elapsed_s"]),
        "single_messages": single["sent"],
        "lost": lost,
        "duplicated": duplicated,
        **naive,
        "method": "messages queued in ingest's persistent session first, then drained: ingest's own limit",
    }
