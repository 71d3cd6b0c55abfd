"""Poison packs against the real pipeline and PostgreSQL: each becomes a dead letter, the rest is stored.

Every pack of the list in issue 10 is reproduced byte for byte (SenML JSON written by
hand, since the encoder refuses them): seq 2^63, NUL in `bid` and in a unit, a
10,000-character quantity, a lone surrogate, `bt` in the year 12000, `bt` 1e20 and a
pack spanning 2,500 days. A refusal the validation cannot foresee (a CHECK constraint
added to the table) is isolated by splitting the batch. Through the real broker,
each poison pack is followed by a canary from another device that must be stored
within seconds, and ingest's Prometheus metrics are scraped over HTTP.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import IngestOptions, IngestService, Message, Pipeline
from ingest.validate import PackLimits
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import Watermark, ingest_filters, up_topic
from storage.registry import register_device

T0 = 1_790_000_000.0  # 2026-09-21
DAY = 86_400.0


def _record(**fields) -> dict:
    return {"n": "air-1/temperature", "u": "Cel", "v": 20.5, **fields}


def poison_packs() -> dict[str, tuple[bytes, str]]:
    """name -> (raw SenML JSON, expected dead-letter reason). The first record carries bid and seq."""
    head = {"bt": T0, "bid": "boot-p"}
    raw = {
        "seq 2^63": ([{**head, "seq": 2**63, **_record()}], "bad_header"),
        "NUL in bid": ([{"bt": T0, "bid": "bo\u0000ot", "seq": 1, **_record()}], "bad_header"),
        "NUL in unit": ([{**head, "seq": 2, **_record(u="C\u0000el")}], "bad_unit"),
        "10,000-char quantity": ([{**head, "seq": 3, **_record(n="air-1/" + "q" * 10_000)}], "bad_name"),
        "bt in year 12000": ([{**head, "seq": 5, "bt": (12000 - 1970) * 365.2425 * DAY, **_record()}],
                             "time_out_of_range"),
        "bt 1e20": ([{**head, "seq": 6, "bt": 1e20, **_record()}], "time_out_of_range"),
        "2,500 distinct days": ([{**head, "seq": 7, **_record()}]
                                + [_record(t=-i * DAY) for i in range(1, 2500)], "too_many_days"),
    }
    out = {name: (json.dumps(pack).encode(), reason) for name, (pack, reason) in raw.items()}
    # json.dumps would escape the surrogate as "\\ud800" too, but say it as the device sent it
    out["lone surrogate in bid"] = (
        b'[{"bt":%d,"bid":"\\ud800","seq":4,"n":"air-1/temperature","u":"Cel","v":1}]' % T0, "bad_header")
    out["lone surrogate in unit"] = (
        b'[{"bt":%d,"bid":"boot-p","seq":8,"n":"air-1/temperature","u":"\\udc00","v":1}]' % T0, "bad_unit")
    return out


def _message(org: str, device: str, payload: bytes, mid: int = 1) -> Message:
    return Message(topic=up_topic(org, device), payload=payload, mid=mid, qos=1, content_type=None,
                   received_us=int(T0 * 1e6))


def _good(seq: int, value: float = 21.0, device: str = "air-2", boot: str = "boot-g") -> bytes:
    return encode_pack(Pack(boot, seq, tuple(
        Record(f"{device}/temperature", value + i, T0 + seq * 10 + i, "Cel") for i in range(5))))


@pytest.fixture
def pipeline(database: str, org: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="air-2", gateway="gw-1", kind="serial")
    pipe = Pipeline(database, limits=PackLimits(max_days_per_pack=31))
    yield pipe
    pipe.close()


def _table(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(sql).fetchall()


def test_every_poison_pack_is_a_dead_letter_and_the_good_ones_are_stored(pipeline: Pipeline, database: str,
                                                                         org: str) -> None:
    poisons = poison_packs()
    messages = [_message(org, "gw-1", _good(0), mid=1)]
    messages += [_message(org, "gw-1", payload, mid=10 + i) for i, (payload, _) in enumerate(poisons.values())]
    messages += [_message(org, "gw-1", _good(1), mid=2)]
    result = pipeline.commit(messages)

    assert (result.packs_stored, result.packs_dead_lettered, result.readings_stored) == (2, len(poisons), 10)
    letters = _table(database, "SELECT reason, detail, payload FROM dead_letters ORDER BY id")
    assert sorted(r for r, _, _ in letters) == sorted(reason for _, reason in poisons.values())
    assert {bytes(p) for _, _, p in letters} == {payload for payload, _ in poisons.values()}  # kept as sent
    assert all("\x00" not in detail for _, detail, _ in letters)
    stored = _table(database, "SELECT value FROM readings ORDER BY time")
    assert [v for (v,) in stored] == [21.0 + i for i in range(5)] * 2
    counters = dict(_table(database, "SELECT name, value FROM ingest_counters"))
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"] == 2 + len(poisons)
    # poison packs whose identity is storable are accounted for: their seqs are not holes
    claimed = _table(database, "SELECT seq, readings FROM ingest_packs WHERE boot_id = 'boot-p' ORDER BY seq")
    assert claimed == [(2, 0), (3, 0), (5, 0), (6, 0), (7, 0), (8, 0)]


def test_a_redelivered_poison_pack_is_a_duplicate_not_a_second_dead_letter(pipeline: Pipeline, database: str,
                                                                         org: str) -> None:
    payload, _ = poison_packs()["bt 1e20"]
    first = pipeline.commit([_message(org, "gw-1", payload)])
    again = pipeline.commit([_message(org, "gw-1", payload)])
    assert (first.packs_dead_lettered, again.packs_dead_lettered, again.packs_duplicate) == (1, 0, 1)
    assert _table(database, "SELECT count(*) FROM dead_letters") == [(1,)]


def test_a_refusal_validation_cannot_foresee_is_isolated_by_splitting_the_batch(pipeline: Pipeline, database: str,
                                                                               org: str) -> None:
    with psycopg.connect(database) as conn:  # a real refusal by the server: SQLSTATE 23514
        conn.execute("ALTER TABLE readings ADD CONSTRAINT no_666 CHECK (value <> 666)")
    messages = [_message(org, "gw-1", _good(seq, value=666.0 if seq == 5 else 1.0), mid=seq + 1) for seq in range(12)]
    pieces = list(pipeline.commit_pieces(messages))

    assert [end for end, _ in pieces] == sorted(end for end, _ in pieces)  # in order: PUBACKs keep arrival order
    assert pieces[-1][0] == 12
    assert sum(r.packs_stored for _, r in pieces) == 11
    [(reason, detail)] = _table(database, "SELECT reason, detail FROM dead_letters")
    assert reason == "database_refused" and detail.startswith("SQLSTATE 23514") and "no_666" in detail
    assert _table(database, "SELECT count(*) FROM readings") == [(55,)]
    # the refused pack is accounted for, so the watermark passes it
    marks = {w.boot_id: w for _, r in pieces for w in r.watermarks.values()}
    assert marks["boot-g"] == Watermark("boot-g", 11)


def test_times_outside_a_configured_window_are_refused(database: str, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="air-2", kind="sensor")
    pipe = Pipeline(database, limits=PackLimits(time_min_s=T0 - DAY, time_ahead_s=0.0))
    try:
        old = encode_pack(Pack("b", 0, (Record("air-2/temperature", 1.0, T0 - 2 * DAY, "Cel"),)))
        result = pipe.commit([_message(org, "air-2", old), _message(org, "air-2", _good(1))])
    finally:
        pipe.close()
    assert (result.packs_stored, result.packs_dead_lettered) == (1, 1)
    assert result.dead_letters[0].reason == "time_out_of_range"


def _scrape(port: int) -> dict[str, float]:
    """Samples of ingest's /metrics, read over HTTP as Prometheus would."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


@pytest.mark.slow
def test_each_poison_pack_is_followed_by_a_canary_stored_within_seconds(database: str, mqtt_broker, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="canary", kind="sensor")
    service = IngestService(IngestOptions(
        database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}", batch_max_age_ms=50,
        filters=ingest_filters(org), metrics_port=0))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", mqtt_broker.port)
    publisher.loop_start()
    poisons = poison_packs()
    try:
        assert service.client.connected.wait(30), "ingest never got its SUBACK"
        with psycopg.connect(database, autocommit=True) as watch:
            for i, (name, (payload, _)) in enumerate(poisons.items()):
                publisher.publish(up_topic(org, "gw-1"), payload, qos=1).wait_for_publish(10)
                canary = encode_pack(Pack("canary-boot", i, (Record("canary/temperature", float(i), T0 + i, "Cel"),)))
                publisher.publish(up_topic(org, "canary"), canary, qos=1).wait_for_publish(10)
                wait(lambda: watch.execute(
                    "SELECT count(*) FROM readings r JOIN series s ON s.id = r.series_id"
                    " WHERE s.device = 'canary' AND r.value = %s", (float(i),)).fetchone()[0] == 1,
                    10, f"the canary after the poison pack {name!r}")
            letters = wait(lambda: watch.execute(
                "SELECT reason FROM dead_letters ORDER BY id").fetchall() if watch.execute(
                "SELECT count(*) FROM dead_letters").fetchone()[0] == len(poisons) else None, 10, "every dead letter")
        assert sorted(r for (r,) in letters) == sorted(reason for _, reason in poisons.values())
        assert thread.is_alive()

        def settled() -> dict[str, float] | None:  # counted just after the commit: wait for it
            m = _scrape(service.metrics.port)
            dead = sum(v for k, v in m.items() if k.startswith("citylab_packs_dead_lettered_total{"))
            return m if (m["citylab_packs_stored_total"], dead) == (len(poisons), len(poisons)) else None

        metrics = wait(settled, 10, "the metrics to count every pack")
        assert metrics["citylab_packs_received_total"] == 2 * len(poisons)
        assert metrics["citylab_packs_stored_total"] == len(poisons)
        assert metrics["citylab_readings_stored_total"] == len(poisons)
        assert metrics["citylab_packs_duplicate_total"] == 0
        by_reason = {reason: 0 for _, reason in poisons.values()}
        for _, reason in poisons.values():
            by_reason[reason] += 1
        for reason, n in by_reason.items():
            assert metrics[f'citylab_packs_dead_lettered_total{{reason="{reason}"}}'] == n
        assert metrics["citylab_broker_connected"] == 1
        assert metrics['citylab_ingest_queue_depth{queue="received"}'] == 0
        assert metrics["citylab_ingest_lag_seconds"] == 0
        assert metrics["citylab_commit_seconds_count"] >= len(poisons)
    finally:
        stop.set()
        thread.join(15)
        publisher.loop_stop()
        publisher.disconnect()


def test_a_batch_spanning_many_days_is_committed_in_pieces(database: str, org: str) -> None:
    # every pack is fine alone; together they would lock one partition per day in one transaction
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="air-2", kind="sensor")
    pipe = Pipeline(database, limits=PackLimits(max_days_per_pack=5, max_days_per_batch=8))
    try:
        messages = [_message(org, "air-2", encode_pack(Pack("b", i, (
            Record("air-2/temperature", float(i), T0 - i * DAY, "Cel"),))), mid=i + 1) for i in range(30)]
        pieces = list(pipe.commit_pieces(messages))
    finally:
        pipe.close()
    assert len(pieces) >= 4 and pieces[-1][0] == 30
    assert sum(r.packs_stored for _, r in pieces) == 30
    assert _table(database, "SELECT count(*), count(DISTINCT date_trunc('day', time)) FROM readings") == [(30, 30)]
    assert _table(database, "SELECT count(*) FROM dead_letters") == [(0,)]
