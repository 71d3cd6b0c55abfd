"""Uplinks from The Things Stack v3 and ChirpStack v4 MQTT integrations.

The sample messages follow the documented formats: The Things Stack "Data
Formats" (uplink message) and "CayenneLPP" payload formatter pages, and the
ChirpStack v4 "Event types" (up) and "MQTT" integration pages.
"""

from __future__ import annotations

import base64
import copy
import json
import pickle
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    LORAWAN_FILTERS,
    LoRaWANError,
    ProtocolError,
    Uplink,
    decode_uplink,
    dedup_key,
    encode_lpp,
    lorawan_network,
)

TTS_TOPIC = "v3/city-air@ttn/devices/air-042/up"
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"

# Cayenne LPP formatter example of the docs: channel 3 temperature 27.2, channel 5 temperature 25.5.
TTS_UPLINK = {
    "end_device_ids": {
        "device_id": "air-042",
        "application_ids": {"application_id": "city-air"},
        "dev_eui": "0004A30B001C0530",
        "join_eui": "800000000000000C",
        "dev_addr": "00BCB929",
    },
    "correlation_ids": [
        "as:up:01E0WZGT6Y7657CPFPE5WEYDSQ",
        "gs:conn:01E0WDEC6T5T4XXBAX7S1VMFKE",
        "ns:uplink:01E0WZGSZXZXZS8RFAWZX0F2FY",
    ],
    "received_at": "2020-02-12T15:15:46.014773143Z",
    "uplink_message": {
        "session_key_id": "AXA50tHUGUucuzS/bCGMNw==",
        "f_port": 8,
        "f_cnt": 113,
        "frm_payload": "A2cBEAVnAP8=",
        "decoded_payload": {"temperature_3": 27.200000762939453, "temperature_5": 25.5},
        "rx_metadata": [
            {
                "gateway_ids": {"gateway_id": "gtw1", "eui": "9C5C8E00001A05C4"},
                "time": "2020-02-12T15:15:45.787Z",
                "timestamp": 2463457000,
                "rssi": -35,
                "channel_rssi": -35,
                "snr": 5,
                "channel_index": 2,
            }
        ],
        "settings": {
            "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 7}},
            "coding_rate": "4/6",
            "frequency": "868300000",
        },
        "received_at": "2020-02-12T15:15:45.789585559Z",
        "consumed_airtime": "0.056576s",
    },
}

CS_UPLINK = {
    "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    "time": "2022-07-18T09:34:15.775023242+00:00",
    "deviceInfo": {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "ChirpStack",
        "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
        "applicationName": "Test application",
        "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
        "deviceProfileName": "Test device-profile",
        "deviceName": "Test device",
        "devEui": "0101010101010101",
        "tags": {"key": "value"},
    },
    "devAddr": "00189440",
    "dr": 1,
    "fCnt": 10,
    "fPort": 1,
    "data": "A2cBEAVnAP8=",
    "rxInfo": [
        {
            "gatewayId": "0016c001f153a14c",
            "uplinkId": 4217106255,
            "rssi": -36,
            "snr": 10.5,
            "context": "E3OWOQ==",
            "metadata": {"region_name": "eu868", "region_common_name": "EU868"},
        }
    ],
    "txInfo": {
        "frequency": 867100000,
        "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 11, "codeRate": "CR_4_5"}},
    },
}


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def _bytes(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _tts(**changes: object) -> dict:
    """The sample with fields of ``uplink_message`` replaced (None: removed)."""
    doc = copy.deepcopy(TTS_UPLINK)
    for key, value in changes.items():
        if value is None:
            doc["uplink_message"].pop(key, None)
        else:
            doc["uplink_message"][key] = value
    return doc


def _cs(**changes: object) -> dict:
    doc = copy.deepcopy(CS_UPLINK)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _reason(topic: str, doc: object) -> str:
    payload = doc if isinstance(doc, bytes) else _bytes(doc)
    with pytest.raises(LoRaWANError) as info:
        decode_uplink(topic, payload)
    assert str(info.value)
    return info.value.reason


# -- topics -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "network"),
    [
        ("v3/app1@ttn/devices/dev1/up", "tts"),
        ("v3/app1/devices/dev1/up", "tts"),  # The Things Stack Open Source: no tenant
        (CS_TOPIC, "chirpstack"),
        ("v3/app1@ttn/devices/dev1/join", None),
        ("v3/app1@ttn/devices/dev1/up/normalized", None),
        ("v3//devices/dev1/up", None),
        ("application/1/device/0101010101010101/event/join", None),
        ("application/1/device/0101010101010101/command/down", None),
        ("lab/org/dev/up", None),
        ("", None),
    ],
)
def test_lorawan_network(topic: str, network: str | None) -> None:
    assert lorawan_network(topic) == network


def test_filters_match_the_uplink_topics() -> None:
    def matches(pattern: str, topic: str) -> bool:
        p, t = pattern.split("/"), topic.split("/")
        return len(p) == len(t) and all(a in ("+", b) for a, b in zip(p, t))

    assert matches(LORAWAN_FILTERS[0], TTS_TOPIC)
    assert matches(LORAWAN_FILTERS[1], CS_TOPIC)
    assert not any(matches(f, "v3/a/devices/d/join") for f in LORAWAN_FILTERS)


# -- The Things Stack v3 ------------------------------------------------------


def test_tts_decoded_payload() -> None:
    up = decode_uplink(TTS_TOPIC, _bytes(TTS_UPLINK))
    assert up == Uplink(
        network="tts",
        dev_eui="0004A30B001C0530",
        f_cnt=113,
        f_port=8,
        received_at=1581520545789586 / 1e6, received_us=1581520545789586,  # .789585559 rounded to µs
        readings=(("temperature_3", "Cel", 27.200000762939453), ("temperature_5", "Cel", 25.5)),
        skipped=0,
        source="decoded",
        device_name="air-042",
        uplink_id="as:up:01E0WZGT6Y7657CPFPE5WEYDSQ",
    )


def test_tts_cayenne_keys_and_units() -> None:
    decoded = {
        "digital_in_1": 1,
        "analog_in_2": 3.3,
        "luminosity_3": 512,
        "temperature_4": -4.1,
        "relative_humidity_5": 48.5,
        "barometric_pressure_6": 1017.5,
        "accelerometer_7": {"x": 0.01, "y": -0.02, "z": 1.0},
        "gps_8": {"latitude": 58.97, "longitude": 5.73, "altitude": 12.5},
        "voltage_9": 3.62,
        "pm2_5": 12.0,  # a custom formatter using a citylab quantity name
        "battery": 88,
        "status": "ok",
        "alarm": False,
        "note": None,
        "samples": [1, 2, 3],
        "bad key/with slash": 1.0,
    }
    up = decode_uplink(TTS_TOPIC, _bytes(_tts(decoded_payload=decoded)))
    assert up.readings == (
        ("digital_in_1", None, 1.0),
        ("analog_in_2", None, 3.3),
        ("luminosity_3", "lx", 512.0),
        ("temperature_4", "Cel", -4.1),
        ("relative_humidity_5", "%RH", 48.5),
        ("barometric_pressure_6", "hPa", 1017.5),
        ("accelerometer_7_x", None, 0.01),
        ("accelerometer_7_y", None, -0.02),
        ("accelerometer_7_z", None, 1.0),
        ("gps_8_latitude", "lat", 58.97),
        ("gps_8_longitude", "lon", 5.73),
        ("gps_8_altitude", "m", 12.5),
        ("voltage_9", "V", 3.62),
        ("pm2_5", "ug/m3", 12.0),
        ("battery", "%EL", 88.0),
    )
    assert up.skipped == 5  # string, boolean, null, list, invalid name
    assert all(isinstance(v, float) for _, _, v in up.readings)


def test_tts_channel_map_names_cayenne_keys() -> None:
    decoded = {"temperature_3": 21.5, "relative_humidity_2": 40.0, "gps_1": {"latitude": 1.0}, "other": 7}
    up = decode_uplink(
        TTS_TOPIC, _bytes(_tts(decoded_payload=decoded)), channels={3: "temperature", 1: "pos"}
    )
    assert up.readings == (
        ("temperature", "Cel", 21.5),
        ("relative_humidity_2", "%RH", 40.0),
        ("pos_latitude", "lat", 1.0),
        ("other", None, 7.0),
    )


def test_tts_raw_lpp_when_no_decoded_payload() -> None:
    frame = encode_lpp([(1, "temperature", -4.1), (2, "humidity", 48.5), (3, "barometric_pressure", 1013.2)])
    doc = _tts(decoded_payload=None, frm_payload=base64.b64encode(frame).decode())
    up = decode_uplink(TTS_TOPIC, _bytes(doc))
    assert up.source == "lpp"
    assert up.readings == (
        ("temperature_1", "Cel", -4.1),
        ("humidity_2", "%RH", 48.5),
        ("barometric_pressure_3", "hPa", 1013.2),
    )
    named = decode_uplink(TTS_TOPIC, _bytes(doc), channels={1: "temperature", 2: "humidity"})
    assert [q for q, _, _ in named.readings] == ["temperature", "humidity", "barometric_pressure_3"]


def test_raw_lpp_multi_axis_channel_names_keep_the_axis() -> None:
    frame = bytes.fromhex("0188" "07FD87" "00BEF5" "00086A")  # the myDevices GPS example, channel 1
    doc = _tts(decoded_payload=None, frm_payload=base64.b64encode(frame).decode())
    up = decode_uplink(TTS_TOPIC, _bytes(doc), channels={1: "position"})
    assert [(q, u) for q, u, _ in up.readings] == [
        ("position_latitude", "lat"), ("position_longitude", "lon"), ("position_altitude", "m"),
    ]
    assert up.readings[0][2] == pytest.approx(52.3655)


def test_tts_empty_decoded_payload_falls_back_to_frm_payload() -> None:
    up = decode_uplink(TTS_TOPIC, _bytes(_tts(decoded_payload={})))
    assert up.source == "lpp"
    assert up.readings == (("temperature_3", "Cel", 27.2), ("temperature_5", "Cel", 25.5))


def test_tts_omitted_zero_fields_and_time_fallback() -> None:
    # "Empty fields are omitted": f_cnt 0 is absent; without the Network Server's
    # received_at, the Application Server's (top level) is used.
    doc = _tts(f_cnt=None)
    del doc["uplink_message"]["received_at"]
    up = decode_uplink(TTS_TOPIC, _bytes(doc))
    assert up.f_cnt == 0
    assert up.received_at == pytest.approx(_utc("2020-02-12T15:15:46.014773"), abs=1e-6)


def test_tts_lowercase_dev_eui_is_normalised() -> None:
    doc = _tts()
    doc["end_device_ids"]["dev_eui"] = "70b3d57ed005b89a"
    assert decode_uplink(TTS_TOPIC, _bytes(doc)).dev_eui == "70B3D57ED005B89A"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("end_device_ids"), "bad_uplink"),
        (lambda d: d["end_device_ids"].pop("dev_eui"), "bad_uplink"),
        (lambda d: d["end_device_ids"].update(dev_eui="0004A30B001C05"), "bad_dev_eui"),
        (lambda d: d["end_device_ids"].update(dev_eui="0004A30B001C053Z"), "bad_dev_eui"),
        (lambda d: d["end_device_ids"].update(dev_eui=42), "bad_dev_eui"),
        (lambda d: d["end_device_ids"].update(device_id="someone-else"), "bad_uplink"),
        (lambda d: d.pop("uplink_message"), "bad_uplink"),
        (lambda d: d.update(uplink_message=[1]), "bad_uplink"),
        (lambda d: d["uplink_message"].update(f_cnt=-1), "bad_uplink"),
        (lambda d: d["uplink_message"].update(f_cnt="12a"), "bad_uplink"),
        (lambda d: d["uplink_message"].update(f_port=256), "bad_uplink"),
        (lambda d: d["uplink_message"].update(f_port=True), "bad_uplink"),
        (lambda d: d["uplink_message"].update(received_at="2020-02-12 15:15"), "bad_uplink"),
        (lambda d: d["uplink_message"].update(received_at="2020-02-12T15:15:45"), "bad_uplink"),
        (lambda d: d["uplink_message"].update(received_at="2020-02-30T15:15:45Z"), "bad_uplink"),
        (lambda d: (d["uplink_message"].pop("received_at"), d.pop("received_at")), "bad_uplink"),
        (lambda d: d["uplink_message"].update(decoded_payload=[1, 2]), "bad_uplink"),
        (lambda d: (d["uplink_message"].pop("decoded_payload"), d["uplink_message"].pop("frm_payload")),
         "no_payload"),
        (lambda d: (d["uplink_message"].pop("decoded_payload"), d["uplink_message"].update(frm_payload="")),
         "no_payload"),
        (lambda d: (d["uplink_message"].pop("decoded_payload"), d["uplink_message"].update(frm_payload="!!")),
         "bad_uplink"),
        (lambda d: (d["uplink_message"].pop("decoded_payload"), d["uplink_message"].update(frm_payload=5)),
         "bad_uplink"),
        (lambda d: (d["uplink_message"].pop("decoded_payload"), d["uplink_message"].update(frm_payload="AP8=")),
         "undecodable"),  # 0x00 0xFF: unknown LPP type
    ],
)
def test_tts_bad_fields(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(TTS_UPLINK)
    mutate(doc)
    assert _reason(TTS_TOPIC, doc) == reason


@pytest.mark.parametrize("payload", [b"", b"{", b"\xff\xfe\x00", b"[]", b"42", b'"up"', b"null", b"NaN"])
def test_not_a_json_object(payload: bytes) -> None:
    assert _reason(TTS_TOPIC, payload) == "undecodable"
    assert _reason(CS_TOPIC, payload) == "undecodable"


def test_deeply_nested_json() -> None:
    assert _reason(TTS_TOPIC, b"[" * 100_000) == "undecodable"


def test_other_topic() -> None:
    assert _reason("lab/org/dev/up", TTS_UPLINK) == "bad_uplink"


# -- ChirpStack v4 ------------------------------------------------------------


def test_chirpstack_raw_lpp() -> None:
    up = decode_uplink(CS_TOPIC, _bytes(CS_UPLINK))
    assert up == Uplink(
        network="chirpstack",
        dev_eui="0101010101010101",
        f_cnt=10,
        f_port=1,
        received_at=1658136855775023 / 1e6, received_us=1658136855775023,  # .775023242 rounded to µs
        readings=(("temperature_3", "Cel", 27.2), ("temperature_5", "Cel", 25.5)),
        skipped=0,
        source="lpp",
        device_name="Test device",
        uplink_id="3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    )


def test_chirpstack_cayenne_codec_object_matches_the_things_stack_names() -> None:
    obj = {
        "temperatureSensor": {"3": 27.2, "5": 25.5},
        "humiditySensor": {"2": 48.5},
        "barometer": {"6": 1017.5},
        "illuminanceSensor": {"4": 300},
        "gpsLocation": {"1": {"latitude": 52.3655, "longitude": 4.8885, "altitude": 21.54}},
        "accelerometer": {"7": {"x": 0.0, "y": 0.0, "z": 1.0}},
    }
    up = decode_uplink(CS_TOPIC, _bytes(_cs(object=obj)))
    assert up.source == "decoded"
    assert up.readings == (
        ("temperature_3", "Cel", 27.2),
        ("temperature_5", "Cel", 25.5),
        ("relative_humidity_2", "%RH", 48.5),
        ("barometric_pressure_6", "hPa", 1017.5),
        ("luminosity_4", "lx", 300.0),
        ("gps_1_latitude", "lat", 52.3655),
        ("gps_1_longitude", "lon", 4.8885),
        ("gps_1_altitude", "m", 21.54),
        ("accelerometer_7_x", None, 0.0),
        ("accelerometer_7_y", None, 0.0),
        ("accelerometer_7_z", None, 1.0),
    )
    tts = decode_uplink(TTS_TOPIC, _bytes(_tts(decoded_payload={"temperature_3": 27.2})))
    assert tts.readings[0] == up.readings[0]


def test_chirpstack_custom_codec_object() -> None:
    obj = {"co2": 612, "noise": 54.5, "battery": {"voltage": 3.61, "low": False}, "fw": "1.2.0",
           "deep": {"a": {"b": {"c": 1}}}}
    up = decode_uplink(CS_TOPIC, _bytes(_cs(object=obj)))
    assert up.readings == (("co2", "ppm", 612.0), ("noise", "dB", 54.5), ("battery_voltage", None, 3.61))
    assert up.skipped == 3  # boolean, string, nesting deeper than three levels


def test_chirpstack_omitted_fcnt_is_zero() -> None:
    # The documented example itself has no "fCnt": proto3 JSON omits zero values.
    assert decode_uplink(CS_TOPIC, _bytes(_cs(fCnt=None))).f_cnt == 0


def test_chirpstack_dev_eui_from_topic_when_absent_in_body() -> None:
    doc = _cs()
    del doc["deviceInfo"]["devEui"]
    assert decode_uplink(CS_TOPIC, _bytes(doc)).dev_eui == "0101010101010101"


def test_chirpstack_offset_time() -> None:
    up = decode_uplink(CS_TOPIC, _bytes(_cs(time="2022-07-18T11:34:15.5+02:00")))
    assert up.received_at == _utc("2022-07-18T09:34:15.500000")


@pytest.mark.parametrize(
    ("topic", "mutate", "reason"),
    [
        (CS_TOPIC, lambda d: d.pop("deviceInfo"), "bad_uplink"),
        (CS_TOPIC, lambda d: d["deviceInfo"].update(devEui="0202020202020202"), "bad_dev_eui"),
        (CS_TOPIC, lambda d: d["deviceInfo"].update(devEui="AgICAgICAgI="), "bad_dev_eui"),  # v3 base64
        (CS_TOPIC.replace("0101010101010101", "not-an-eui"), lambda d: None, "bad_dev_eui"),
        (CS_TOPIC, lambda d: d.pop("time"), "bad_uplink"),
        (CS_TOPIC, lambda d: d.update(time=1658136855), "bad_uplink"),
        (CS_TOPIC, lambda d: d.update(time="1970-01-01T00:00:00Z"), "bad_uplink"),  # no clock
        (CS_TOPIC, lambda d: d.update(time="2022-07-18T09:34:15+24:00"), "bad_uplink"),
        (CS_TOPIC, lambda d: d.update(fPort="x"), "bad_uplink"),
        (CS_TOPIC, lambda d: d.pop("data"), "no_payload"),
        (CS_TOPIC, lambda d: d.update(object="temperature"), "bad_uplink"),
        (CS_TOPIC, lambda d: d.update(data="qg=="), "undecodable"),  # the docs' 0xAA: not LPP
    ],
)
def test_chirpstack_bad_fields(topic: str, mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    doc = copy.deepcopy(CS_UPLINK)
    mutate(doc)
    assert _reason(topic, doc) == reason


# -- de-duplication -------------------------------------------------------------


def test_dedup_key_is_stable_and_survives_frame_counter_reset() -> None:
    first = decode_uplink(CS_TOPIC, _bytes(CS_UPLINK))
    again = decode_uplink(CS_TOPIC, _bytes(CS_UPLINK))
    assert dedup_key(first) == dedup_key(again)
    boot_id, seq = dedup_key(first)
    assert boot_id == "lorawan:chirpstack"
    assert seq == 1658136855775023
    # After a rejoin the device counts from 0 again: a new uplink, a new key.
    rejoined = decode_uplink(CS_TOPIC, _bytes(_cs(fCnt=10, time="2022-07-19T09:00:00Z")))
    assert dedup_key(rejoined) != dedup_key(first)
    assert dedup_key(decode_uplink(TTS_TOPIC, _bytes(TTS_UPLINK)))[0] == "lorawan:tts"


def test_error_is_a_protocol_error_and_picklable() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_uplink(TTS_TOPIC, b"{}")
    error = pickle.loads(pickle.dumps(info.value))
    assert isinstance(error, LoRaWANError)
    assert error.reason == info.value.reason == "bad_uplink"


# -- fuzz -------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=16,
)


def _only_protocol_errors(topic: str, payload: bytes, channels: dict[int, str] | None = None) -> None:
    try:
        up = decode_uplink(topic, payload, channels=channels)
    except ProtocolError as exc:
        assert isinstance(exc, LoRaWANError)
        assert exc.reason in {"undecodable", "bad_uplink", "no_payload", "bad_dev_eui"}
        assert str(exc)
    else:
        assert len(up.dev_eui) == 16
        assert all(isinstance(v, float) for _, _, v in up.readings)
        assert len({q for q, _, _ in up.readings}) == len(up.readings)
        dedup_key(up)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _only_protocol_errors(TTS_TOPIC, data)
    _only_protocol_errors(CS_TOPIC, data)


@FUZZ
@given(st.sampled_from(["end_device_ids", "uplink_message", "received_at", "correlation_ids",
                        "deviceInfo", "time", "fCnt", "fPort", "data", "object", "deduplicationId"]),
       json_values)
def test_replaced_top_level_fields(key: str, value: object) -> None:
    for topic, base in ((TTS_TOPIC, TTS_UPLINK), (CS_TOPIC, CS_UPLINK)):
        doc = copy.deepcopy(base)
        doc[key] = value
        _only_protocol_errors(topic, _bytes(doc), channels={3: "temperature"})


@FUZZ
@given(st.sampled_from(["f_cnt", "f_port", "frm_payload", "decoded_payload", "received_at"]), json_values)
def test_replaced_uplink_message_fields(key: str, value: object) -> None:
    doc = copy.deepcopy(TTS_UPLINK)
    doc["uplink_message"][key] = value
    _only_protocol_errors(TTS_TOPIC, _bytes(doc))


@FUZZ
@given(json_values, st.binary(max_size=40))
def test_arbitrary_decoded_payloads_and_frames(decoded: object, frame: bytes) -> None:
    doc = copy.deepcopy(TTS_UPLINK)
    doc["uplink_message"]["decoded_payload"] = decoded
    doc["uplink_message"]["frm_payload"] = base64.b64encode(frame).decode()
    _only_protocol_errors(TTS_TOPIC, _bytes(doc), channels={1: "a", 2: "a"})
    cs = copy.deepcopy(CS_UPLINK)
    cs["object"] = decoded
    cs["data"] = base64.b64encode(frame).decode()
    _only_protocol_errors(CS_TOPIC, _bytes(cs))


@FUZZ
@given(
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
    st.integers(0, 999),
)
def test_times_with_offsets_and_nanoseconds(moment: datetime, offset_min: int, nanos: int) -> None:
    sign = "-" if offset_min < 0 else "+"
    hours, minutes = divmod(abs(offset_min), 60)
    local = moment + timedelta(minutes=offset_min)
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}{nanos:03d}{sign}{hours:02d}:{minutes:02d}"
    up = decode_uplink(CS_TOPIC, _bytes(_cs(time=text)))
    expected = moment.replace(tzinfo=timezone.utc).timestamp() + nanos * 1e-9
    assert up.received_at == pytest.approx(expected, abs=1e-6)


@FUZZ
@given(st.text(max_size=40))
def test_arbitrary_times(text: str) -> None:
    _only_protocol_errors(CS_TOPIC, _bytes(_cs(time=text)))
