"""Network-server uplinks: strings with units, simulated uplinks, exact nanosecond times."""

from __future__ import annotations

import json
import random
from decimal import ROUND_HALF_EVEN, Decimal

import pytest

from protocol.lorawan import decode_uplink

TOPIC = "v3/city-app@city/devices/node-1/up"
CS_TOPIC = "application/0b8c6b1a/device/0004a30b001c0530/event/up"


def _tts(decoded: dict, received_at: str = "2026-03-01T12:00:00.123456789Z", **top) -> bytes:
    return json.dumps({
        "end_device_ids": {"device_id": "node-1", "dev_eui": "0004A30B001C0530",
                           "application_ids": {"application_id": "city-app"}},
        "received_at": received_at,
        "uplink_message": {"f_port": 2, "f_cnt": 7, "received_at": received_at, "decoded_payload": decoded},
        **top,
    }).encode()


def test_strings_with_units_parse_to_numbers_in_that_unit() -> None:
    # the shapes of real TTS payload formatters (e.g. Dragino LHT65: "BatV", strings with units)
    up = decode_uplink(TOPIC, _tts({"Bat": "3.384 V", "TempC_SHT": "30.11 °C", "Hum": "61.5 %RH", "PM": "12 µg/m³",
                                    "Status": "OK", "Odd": "5 furlongs", "Plain": "42"}))
    got = {q: (u, v) for q, u, v in up.readings}
    assert got["Bat"] == ("V", 3.384)
    assert got["TempC_SHT"] == ("Cel", 30.11)
    assert got["Hum"] == ("%RH", 61.5)
    assert got["PM"] == ("ug/m3", 12.0)
    assert got["Plain"] == (None, 42.0)
    assert "Status" not in got and "Odd" not in got and up.skipped == 2


def test_simulated_uplinks_are_flagged() -> None:
    assert decode_uplink(TOPIC, _tts({"temperature": 1}, simulated=True)).simulated is True
    assert decode_uplink(TOPIC, _tts({"temperature": 1})).simulated is False


@pytest.mark.parametrize("fraction", ["5", "0000005", "0000015", "0000025", "123456789", "999999500", "9999995",
                                      "0000004999"])
def test_nanosecond_times_round_exactly(fraction: str) -> None:
    up = decode_uplink(TOPIC, _tts({"temperature": 1}, received_at=f"2026-03-01T12:00:00.{fraction}Z"))
    whole = 1_772_366_400 * 1_000_000
    want = whole + int((Decimal("0." + fraction) * 10**6).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    assert up.received_us == want


def test_random_nanosecond_times_round_exactly() -> None:
    rng = random.Random(3)
    for _ in range(500):
        ns = rng.randrange(10**9)
        doc = {"deviceInfo": {"devEui": "0004a30b001c0530"}, "time": f"2026-03-01T12:00:00.{ns:09d}+00:00",
               "object": {"temperature": 1.0}}
        up = decode_uplink(CS_TOPIC, json.dumps(doc).encode())
        want = 1_772_366_400 * 1_000_000 + int((Decimal(ns) / 1000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        assert up.received_us == want


def test_status_and_location_events() -> None:
    from protocol.lorawan import dedup_key, lorawan_event

    base = "application/0b8c6b1a/device/0004a30b001c0530/event"
    info = {"tenantId": "52f14cd4", "applicationId": "0b8c6b1a", "deviceName": "node-1", "devEui": "0004a30b001c0530"}
    # ChirpStack v4 StatusEvent and LocationEvent (integration.proto), as its MQTT integration publishes them
    status = decode_uplink(f"{base}/status", json.dumps({
        "deduplicationId": "9e5b3f6e", "time": "2026-03-01T12:00:00.5Z", "deviceInfo": info, "margin": 6,
        "externalPowerSource": False, "batteryLevelUnavailable": False, "batteryLevel": 75.5}).encode())
    assert status.readings == (("battery", "%EL", 75.5), ("link_margin", "dB", 6.0))
    assert dedup_key(status) == ("lorawan:chirpstack:status", 1_772_366_400_500_000)
    powered = decode_uplink(f"{base}/status", json.dumps({
        "time": "2026-03-01T12:00:00Z", "deviceInfo": info, "margin": 3, "externalPowerSource": True}).encode())
    assert powered.readings == (("link_margin", "dB", 3.0),)
    located = decode_uplink(f"{base}/location", json.dumps({
        "deduplicationId": "9e5b3f6e", "time": "2026-03-01T12:00:00Z", "deviceInfo": info,
        "location": {"latitude": 58.97, "longitude": 5.73, "altitude": 12.0, "source": "GEO_RESOLVER_TDOA",
                     "accuracy": 20}}).encode())
    assert located.readings == (("latitude", "lat", 58.97), ("longitude", "lon", 5.73), ("altitude", "m", 12.0))
    # The Things Stack v3 location solved message
    tts = decode_uplink("v3/city-app@city/devices/node-1/location/solved", json.dumps({
        "end_device_ids": {"device_id": "node-1", "application_ids": {"application_id": "city-app"},
                           "dev_eui": "0004A30B001C0530"},
        "received_at": "2026-03-01T12:00:01.000000001Z",
        "location_solved": {"service": "lora-cloud-device-management-v1-gnss",
                            "location": {"latitude": 58.9701, "longitude": 5.7331, "altitude": 3, "accuracy": 7,
                                         "source": "SOURCE_GPS"}}}).encode())
    assert tts.event == "location" and tts.received_us == 1_772_366_401_000_000
    assert [q for q, _, _ in tts.readings] == ["latitude", "longitude", "altitude"]
    assert lorawan_event("application/a/device/0004a30b001c0530/event/join") is None
