"""Ingest as it runs: a real Mosquitto, a real PostgreSQL, packs published by a real MQTT client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService
from lab_probes import wait
from protocol.lpp import encode_lpp
from protocol.senml import SENML_JSON, Pack, Record, encode_pack
from protocol.topics import committed_topic, decode_watermark, ingest_filters, lpp_topic, up_topic
from storage.registry import register_device

pytestmark = pytest.mark.slow

T0 = 1_790_000_000.0


def _publisher(url_port: int) -> paho.Client:
    client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    return client


def _wait_for(probe, done=bool, timeout: float = 20.0, what: str = "condition"):
    """Call `probe` until `done(value)`; return that value."""
    seen = [None]

    def settled() -> bool:
        seen[0] = probe()
        return done(seen[0])

    wait(settled, timeout, what, detail=lambda: f"last seen: {seen[0]!r}")
    return seen[0]


@pytest.fixture
def ingest(database: str, mqtt_broker, org: str) -> Iterator[IngestService]:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="lora-1", kind="lora")
    service = IngestService(IngestOptions(
        database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}", batch_max_age_ms=50,
        filters=ingest_filters(org),
    ))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    _wait_for(service.client.connected.is_set, what="ingest's subscription (SUBACK)")
    yield service
    stop.set()
    thread.join(10)


def _counts(database: str) -> dict[str, int]:
    with psycopg.connect(database) as conn:
        counters = dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())
        counters["readings_rows"] = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        counters["dead_letter_rows"] = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return counters


def test_packs_flow_through_and_are_counted(ingest: IngestService, database: str, mqtt_broker, org: str) -> None:
    watermarks: list[bytes] = []
    publisher = _publisher(mqtt_broker.port)
    publisher.on_message = lambda c, u, m: watermarks.append(m.payload)
    publisher.subscribe(committed_topic(org, "gw-1"), qos=1)
    sent = 0
    for seq in range(20):
        pack = Pack("boot-1", seq, tuple(Record("air-1/pm2_5", float(seq * 10 + i), T0 + seq + i / 10, "ug/m3")
                                         for i in range(10)))
        content_type = SENML_JSON if seq % 2 else None
        payload = encode_pack(pack, content_type=content_type or "application/senml+cbor")
        topic = up_topic(org, "gw-1", suffix="json") if content_type else up_topic(org, "gw-1")
        publisher.publish(topic, payload, qos=1).wait_for_publish(5)
        sent += 1
    publisher.publish(lpp_topic(org, "lora-1", 1), encode_lpp([(1, "temperature", 21.5), (2, "humidity", 40.0)]),
                      qos=1).wait_for_publish(5)
    publisher.publish(up_topic(org, "gw-1"), b"{broken", qos=1).wait_for_publish(5)
    publisher.publish(up_topic(org, "nobody"), encode_pack(Pack("b", 0, (Record("nobody/x", 1.0, T0),))),
                      qos=1).wait_for_publish(5)
    total = sent + 3

    counts = _wait_for(lambda: _counts(database), lambda c: c["packs_received"] == total, what="all packs counted")
    assert counts["packs_stored"] == sent + 1
    assert counts["packs_dead_lettered"] == 2 == counts["dead_letter_rows"]
    assert counts["packs_received"] == counts["packs_stored"] + counts["packs_dead_lettered"]
    assert counts["readings_stored"] == counts["readings_rows"] == sent * 10 + 2
    with psycopg.connect(database) as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dead_letters"))
        lora = conn.execute("SELECT s.quantity, r.value FROM readings r JOIN series s ON s.id = r.series_id"
                            " WHERE s.device = 'lora-1' ORDER BY 1").fetchall()
    assert reasons == ["not_senml", "unknown_device"]
    assert lora == [("humidity_2", 40.0), ("temperature_1", 21.5)]
    last = _wait_for(lambda: watermarks and decode_watermark(watermarks[-1]),
                     lambda w: w and w.seq == 19, what="watermark 19")
    assert last.boot_id == "boot-1"
    publisher.loop_stop()
    publisher.disconnect()


def test_the_same_packs_published_twice_are_stored_once(ingest: IngestService, database: str, mqtt_broker,
                                                        org: str) -> None:
    publisher = _publisher(mqtt_broker.port)
    payloads = [encode_pack(Pack("boot-2", seq, (Record("air-1/noise", 50.0 + seq, T0 + seq, "dB"),)))
                for seq in range(30)]
    for _ in range(2):
        for payload in payloads:
            publisher.publish(up_topic(org, "gw-1"), payload, qos=1).wait_for_publish(5)
    counts = _wait_for(lambda: _counts(database), lambda c: c["packs_duplicate"] == 30, what="duplicates counted")
    assert counts["packs_stored"] == 30 and counts["readings_rows"] == 30
    assert counts["packs_received"] == 30
    publisher.loop_stop()
    publisher.disconnect()
