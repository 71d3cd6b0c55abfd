"""Unmodified SenML devices: every example of RFC 8428 sections 5 and 6, JSON and CBOR,
stored with the RFC's resolved values in a real PostgreSQL; declared names, typed
values, unit conversion, content-derived identities, no series for refused packs."""

from __future__ import annotations

import json
from decimal import Decimal

import cbor2
import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.topics import up_topic
from storage.registry import register_device, set_senml_names
from storage.typed import typed_readings

NOW = 1_790_000_000.0  # the time of reception
URN = "urn:dev:ow:10e2073a01080063"
URN_5_1_2 = "urn:dev:ow:10e2073a0108006"  # the second 5.1.2 example names this (shorter) URN

# (section, pack, {(device, quantity): [(time, value), ...]}, {(device, quantity): [(time, value)]})
EXAMPLES = [
    ("5.1.1", [{"n": URN, "u": "Cel", "v": 23.1}],
     {("ow-1", "temperature"): [(NOW, 23.1)]}, {}),
    ("5.1.2a", [{"bn": URN + ":", "n": "voltage", "u": "V", "v": 120.1}, {"n": "current", "u": "A", "v": 1.2}],
     {("ow-1", "voltage"): [(NOW, 120.1)], ("ow-1", "current"): [(NOW, 1.2)]}, {}),
    ("5.1.2b", [{"bn": URN_5_1_2 + ":", "bt": 1.276020076001e+09, "bu": "A", "bver": 5,
                 "n": "voltage", "u": "V", "v": 120.1}] +
     [{"n": "current", "t": t, "v": v} for t, v in [(-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6)]] +
     [{"n": "current", "v": 1.7}],
     {("ow-2", "voltage"): [(1.276020076001e9, 120.1)],
      ("ow-2", "current"): [(1.276020076001e9 + t, v) for t, v in
                            [(-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6), (0, 1.7)]]}, {}),
    ("5.1.2c", [{"bn": URN, "bt": 1.320067464e+09, "bu": "%RH", "v": 21.2}] +
     [{"t": t, "v": v} for t, v in [(10, 21.3), (20, 21.4), (30, 21.4), (40, 21.5), (50, 21.5), (60, 21.5),
                                    (70, 21.6), (80, 21.7)]],
     {("ow-1", "humidity"): [(1.320067464e9 + t, v) for t, v in
                             [(0, 21.2), (10, 21.3), (20, 21.4), (30, 21.4), (40, 21.5), (50, 21.5), (60, 21.5),
                              (70, 21.6), (80, 21.7)]]}, {}),
    ("5.1.3", [{"bn": URN, "bt": 1.320067464e+09, "bu": "%RH", "v": 20}, {"u": "lon", "v": 24.30621},
               {"u": "lat", "v": 60.07965}, {"t": 60, "v": 20.3}, {"u": "lon", "t": 60, "v": 24.30622},
               {"u": "lat", "t": 60, "v": 60.07965}, {"t": 120, "v": 20.7}, {"u": "lon", "t": 120, "v": 24.30623},
               {"u": "lat", "t": 120, "v": 60.07966}, {"u": "%EL", "t": 150, "v": 98}, {"t": 180, "v": 21.2},
               {"u": "lon", "t": 180, "v": 24.30628}, {"u": "lat", "t": 180, "v": 60.07967}],
     # the resolved records of RFC 8428 section 5.1.4
     {("ow-1", "humidity"): [(1.320067464e9, 20), (1.320067524e9, 20.3), (1.320067584e9, 20.7),
                             (1.320067644e9, 21.2)],
      ("ow-1", "longitude"): [(1.320067464e9, 24.30621), (1.320067524e9, 24.30622), (1.320067584e9, 24.30623),
                              (1.320067644e9, 24.30628)],
      ("ow-1", "latitude"): [(1.320067464e9, 60.07965), (1.320067524e9, 60.07965), (1.320067584e9, 60.07966),
                             (1.320067644e9, 60.07967)],
      ("ow-1", "battery"): [(1.320067614e9, 98)]}, {}),
    # 5.1.4: the resolved form of 5.1.3 is itself a pack, and resolves to the same readings
    ("5.1.4", [{"n": URN, "u": u, "t": t, "v": v} for u, t, v in [
        ("%RH", 1.320067464e+09, 20), ("lon", 1.320067464e+09, 24.30621), ("lat", 1.320067464e+09, 60.07965),
        ("%RH", 1.320067524e+09, 20.3), ("lon", 1.320067524e+09, 24.30622), ("lat", 1.320067524e+09, 60.07965),
        ("%RH", 1.320067584e+09, 20.7), ("lon", 1.320067584e+09, 24.30623), ("lat", 1.320067584e+09, 60.07966),
        ("%EL", 1.320067614e+09, 98), ("%RH", 1.320067644e+09, 21.2), ("lon", 1.320067644e+09, 24.30628),
        ("lat", 1.320067644e+09, 60.07967)]],
     {("ow-1", "humidity"): [(1.320067464e9, 20), (1.320067524e9, 20.3), (1.320067584e9, 20.7),
                             (1.320067644e9, 21.2)],
      ("ow-1", "longitude"): [(1.320067464e9, 24.30621), (1.320067524e9, 24.30622), (1.320067584e9, 24.30623),
                              (1.320067644e9, 24.30628)],
      ("ow-1", "latitude"): [(1.320067464e9, 60.07965), (1.320067524e9, 60.07965), (1.320067584e9, 60.07966),
                             (1.320067644e9, 60.07967)],
      ("ow-1", "battery"): [(1.320067614e9, 98)]}, {}),
    ("5.1.5", [{"bn": URN + ":", "n": "temp", "u": "Cel", "v": 23.1}, {"n": "label", "vs": "Machine Room"},
               {"n": "open", "vb": False}, {"n": "nfv-reader", "vd": "aGkgCg"}],
     {("ow-1", "temperature"): [(NOW, 23.1)]},
     {("ow-1", "label"): [(NOW, "Machine Room")], ("ow-1", "open"): [(NOW, False)],
      ("ow-1", "nfv-reader"): [(NOW, b"hi \n")]}),
    ("5.1.6", [{"bn": "2001:db8::2/", "bt": 1.320078429e+09, "n": "temperature", "u": "Cel", "v": 25.2},
               {"n": "humidity", "u": "%RH", "v": 30},
               {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
               {"n": "humidity", "u": "%RH", "v": 67}],
     {("ip-2", "temperature"): [(1.320078429e9, 25.2)], ("ip-2", "humidity"): [(1.320078429e9, 30)],
      ("ip-1", "temperature"): [(1.320078429e9, 12.3)], ("ip-1", "humidity"): [(1.320078429e9, 67)]}, {}),
    ("5.1.7a", [{"bn": URN + ":"}, {"n": "temp", "u": "Cel", "v": 23.1}, {"n": "heat", "u": "/", "v": 1},
                {"n": "fan", "u": "/", "v": 0}],
     {("ow-1", "temperature"): [(NOW, 23.1)], ("ow-1", "heat"): [(NOW, 1)], ("ow-1", "fan"): [(NOW, 0)]}, {}),
    ("5.1.7b", [{"bt": 1.320078429e+09, "bu": "/", "n": "2001:db8::3", "v": 1}, {"n": "2001:db8::4", "v": 1}],
     {("ip-3", "switch"): [(1.320078429e9, 1)], ("ip-4", "switch"): [(1.320078429e9, 1)]}, {}),
    ("5.1.7c", [{"bt": 1.320078429e+09, "bu": "/", "n": "2001:db8::3", "v": 0.5}, {"n": "2001:db8::4", "v": 0.5},
                {"n": "2001:db8::3", "t": 0.1, "v": 0}, {"n": "2001:db8::4", "t": 0.1, "v": 0}],
     {("ip-3", "switch"): [(1.320078429e9, 0.5), (1.3200784291e9, 0)],
      ("ip-4", "switch"): [(1.320078429e9, 0.5), (1.3200784291e9, 0)]}, {}),
]

_CBOR_LABELS = {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6, "n": 0, "u": 1, "v": 2, "vs": 3,
                "vb": 4, "s": 5, "t": 6, "ut": 7, "vd": 8}

# RFC 8428 section 6: the CBOR of the second 5.1.2 example, byte for byte.
RFC_CBOR = bytes.fromhex(
    "87a721781b75726e3a6465763a6f773a3130653230373361303130383030363a22fb41d303a15b00106223614120050067"
    "766f6c74616765016156 02fb405e066666666666a3006763757272656e740624 02fb3ff3333333333333a3006763757272"
    "656e74062302fb3ff4cccccccccccda3006763757272656e74062202fb3ff6666666666666a3006763757272656e740621"
    "02f93e00a3006763757272656e74062002fb3ff999999999999aa3006763757272656e74060002fb3ffb333333333333"
    .replace(" ", ""))


def _cbor(pack: list[dict]) -> bytes:
    out = []
    for record in pack:
        entry = {}
        for key, value in record.items():
            if key == "vd":
                value = b"hi \n"
            entry[_CBOR_LABELS[key]] = value
        out.append(entry)
    return cbor2.dumps(out)


@pytest.fixture
def lab(database: str, org: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw", kind="gateway")
        for device, base, names in [
            ("ow-1", URN, {"temp": "temperature"}), ("ow-2", URN_5_1_2, {}),
            ("ip-1", "2001:db8::1", {}), ("ip-2", "2001:db8::2", {}),
            ("ip-3", "2001:db8::3", {"": "switch"}), ("ip-4", "2001:db8::4", {"": "switch"}),
        ]:
            register_device(conn, org=org, device=device, gateway="gw")
            set_senml_names(conn, device, org=org, base_name=base, names=names)
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def _message(org: str, payload: bytes, content_type: str, mid: int = 1, device: str = "gw") -> Message:
    return Message(topic=up_topic(org, device), payload=payload, mid=mid, qos=1, content_type=content_type,
                   received_us=int(NOW * 1e6))


def _stored(database: str, org: str) -> tuple[dict, dict]:
    with psycopg.connect(database) as conn:
        numbers: dict = {}
        for device, quantity, t, value in conn.execute(
                "SELECT s.device, s.quantity, (extract(epoch FROM r.time - timestamptz 'epoch') * 1000000)::bigint,"
                " r.value FROM readings r JOIN series s ON s.id = r.series_id WHERE s.org = %s ORDER BY r.time",
                (org,)):
            numbers.setdefault((device, quantity), []).append((t, value))
        typed: dict = {}
        for sid, device, quantity in conn.execute(
                "SELECT id, device, quantity FROM series WHERE org = %s AND id IN"
                " (SELECT series_id FROM typed_readings)", (org,)).fetchall():
            typed[(device, quantity)] = typed_readings(conn, sid)
    return numbers, typed


@pytest.mark.slow
@pytest.mark.parametrize("content_type", ["application/senml+json", "application/senml+cbor"])
@pytest.mark.parametrize(("section", "pack", "numbers", "typed"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_rfc8428_examples_are_stored_resolved(lab: Pipeline, database: str, org: str, content_type: str,
                                              section: str, pack: list, numbers: dict, typed: dict) -> None:
    payload = json.dumps(pack).encode() if content_type.endswith("json") else _cbor(pack)
    result = lab.commit([_message(org, payload, content_type)])
    assert result.dead_letters == () and result.packs_stored == 1
    got_numbers, got_typed = _stored(database, org)
    assert got_numbers == {k: [(round(t * 1e6), float(v)) for t, v in rows] for k, rows in numbers.items()}
    assert got_typed == {k: [(round(t * 1e6), v) for t, v in rows] for k, rows in typed.items()}
    # a redelivery (no bid/seq: a content-derived identity) is stored once
    again = lab.commit([_message(org, payload, content_type, mid=2)])
    if section in ("5.1.2b", "5.1.2c", "5.1.3", "5.1.4", "5.1.6", "5.1.7b", "5.1.7c"):  # absolute times only
        assert (again.packs_duplicate, again.readings_stored) == (1, 0)


@pytest.mark.slow
def test_rfc8428_section6_cbor_bytes(lab: Pipeline, database: str, org: str) -> None:
    result = lab.commit([_message(org, RFC_CBOR, "application/senml+cbor")])
    assert result.dead_letters == () and result.readings_stored == 7
    numbers, _ = _stored(database, org)
    assert numbers[("ow-2", "current")] == [(round((1.276020076001e9 + t) * 1e6), v) for t, v in
                                            [(-5, 1.2), (-4, 1.3), (-3, 1.4), (-2, 1.5), (-1, 1.6), (0, 1.7)]]


def test_units_convert_into_the_series_unit_and_sums_are_series(lab: Pipeline, database: str, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="air-1")
    pack = [{"bn": "air-1/", "bt": NOW - 60, "n": "pm2_5", "u": "kg/m3", "v": Decimal("1.25e-8")},
            {"n": "pressure", "u": "Pa", "v": 101325},
            {"n": "temperature", "u": "K", "v": 300},
            {"n": "energy", "u": "Wh", "bs": 1000, "s": 500}]  # a base sum applies to the records after it
    cbor = cbor2.dumps([{_CBOR_LABELS[k]: v for k, v in r.items()} for r in pack])
    result = lab.commit([_message(org, cbor, "application/senml+cbor", device="air-1")])
    assert result.dead_letters == () and result.readings_stored == 4
    with psycopg.connect(database) as conn:
        rows = dict((q, (u, v)) for q, u, v in conn.execute(
            "SELECT s.quantity, s.unit, r.value FROM readings r JOIN series s ON s.id = r.series_id"
            " WHERE s.org = %s AND s.device = 'air-1'", (org,)))
    assert rows["pm2_5"][0] == "ug/m3" and rows["pm2_5"][1] == pytest.approx(12.5)
    assert rows["pressure"] == ("hPa", pytest.approx(1013.25))
    assert rows["energy_sum"] == ("Wh", 1500.0)  # the sum: base sum 1000 + sum 500
    assert rows["temperature"] == ("Cel", pytest.approx(26.85))


def test_refused_packs_create_no_series(lab: Pipeline, database: str, org: str) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="air-1")
    first = json.dumps([{"bn": "air-1/", "bt": NOW, "n": "temperature", "u": "Cel", "v": 1}]).encode()
    assert lab.commit([_message(org, first, "application/senml+json", device="air-1")]).packs_stored == 1
    refused = json.dumps([{"bn": "air-1/", "bt": NOW + 1, "n": "noise", "u": "dB", "v": 50},
                          {"n": "temperature", "u": "V", "v": 3}]).encode()
    result = lab.commit([_message(org, refused, "application/senml+json", mid=2, device="air-1")])
    assert [d.reason for d in result.dead_letters] == ["unit_mismatch"]
    unmapped = json.dumps([{"n": "urn:dev:mac:0024befffe804ff1", "v": 1}]).encode()
    result = lab.commit([_message(org, unmapped, "application/senml+json", mid=3, device="air-1")])
    assert [d.reason for d in result.dead_letters] == ["unmapped_name"]
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT quantity FROM series WHERE org = %s", (org,)).fetchall() == [("temperature",)]
        counters = dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"]


@pytest.mark.slow
def test_rfc8428_examples_through_a_real_broker(database: str, mqtt_broker, org: str) -> None:
    """Every example, JSON (MQTT 5 content type) and CBOR (topic suffix), published by a real
    client to Mosquitto and stored by the ingest service; "now" is the time ingest received it."""
    import threading
    import time

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from ingest import IngestOptions, IngestService
    from lab_probes import wait
    from protocol.topics import ingest_filters

    orgs = {"json": org, "cbor": f"{org}-c"}
    with psycopg.connect(database) as conn:
        for tenant in orgs.values():
            register_device(conn, org=tenant, device="gw", kind="gateway")
            for device, base, names in [
                ("ow-1", URN, {"temp": "temperature"}), ("ow-2", URN_5_1_2, {}),
                ("ip-1", "2001:db8::1", {}), ("ip-2", "2001:db8::2", {}),
                ("ip-3", "2001:db8::3", {"": "switch"}), ("ip-4", "2001:db8::4", {"": "switch"}),
            ]:
                register_device(conn, org=tenant, device=device, gateway="gw")
                set_senml_names(conn, device, org=tenant, base_name=base, names=names)
    service = IngestService(IngestOptions(
        database_url=database, mqtt_url=mqtt_broker.url, client_id=f"ingest-{org}", batch_max_age_ms=50,
        filters=ingest_filters(orgs["json"]) + ingest_filters(orgs["cbor"])))
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    publisher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    try:
        # set once the broker granted the subscriptions (ingest's on_subscribe)
        wait(service.client.connected.is_set, 20, "ingest to connect and be granted its subscriptions")
        publisher.connect("127.0.0.1", mqtt_broker.port)
        publisher.loop_start()
        before = time.time()
        json_props = Properties(PacketTypes.PUBLISH)
        json_props.ContentType = "application/senml+json"
        for _, pack, _, _ in EXAMPLES:
            publisher.publish(up_topic(orgs["json"], "gw"), json.dumps(pack), qos=1,
                              properties=json_props).wait_for_publish(10)
            publisher.publish(up_topic(orgs["cbor"], "gw", suffix="cbor"), _cbor(pack), qos=1).wait_for_publish(10)
        wait(lambda: (service.totals["packs_stored"] + service.totals["packs_dead_lettered"]
                      + service.totals["packs_duplicate"]) >= 2 * len(EXAMPLES),
             30, f"ingest to handle {2 * len(EXAMPLES)} packs", detail=lambda: f"ingest stored {service.totals}")
        after = time.time()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        stop.set()
        thread.join(10)
    assert service.totals["packs_dead_lettered"] == 0
    # 5.1.4 is 5.1.3 resolved: the same readings, hence the same content-derived identity
    assert service.totals["packs_duplicate"] == 2

    def matches(rows: list, want: list) -> bool:
        """Same values; a time of NOW (relative in the pack) lies within the publication window."""
        if len(rows) != len(want):
            return False
        for (t, v), (wt, wv) in zip(sorted(rows, key=lambda r: (r[0], str(r[1]))),
                                    sorted(want, key=lambda r: (r[0], str(r[1])))):
            if v != wv and not (isinstance(v, float) and float(wv) == v):
                return False
            if (wt == "now" and not before - 1 <= t / 1e6 <= after + 1) or (wt != "now" and round(wt * 1e6) != t):
                return False
        return True

    expected_numbers: dict = {}
    expected_typed: dict = {}
    for section, _, numbers, typed in EXAMPLES:
        if section == "5.1.4":
            continue
        for target, source in ((expected_numbers, numbers), (expected_typed, typed)):
            for key, rows in source.items():
                target.setdefault(key, []).extend(("now" if t == NOW else t, v) for t, v in rows)
    for tenant in orgs.values():
        numbers, typed = _stored(database, tenant)
        assert set(numbers) == set(expected_numbers)
        for key, want in expected_numbers.items():
            got = sorted(numbers[key], key=lambda r: (r[0], r[1]))
            assert matches(got, want), (tenant, key, got, want)
        assert set(typed) == set(expected_typed)
        for key, want in expected_typed.items():
            assert matches(typed[key], want), (tenant, key, typed[key], want)
