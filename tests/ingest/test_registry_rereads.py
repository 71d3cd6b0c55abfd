"""Ingest's registry cache never refuses a device that exists, and a flood naming unknown
devices does not become one database query per pack (real PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import time

import psycopg
import pytest

from ingest import Message, Pipeline
from ingest.registry import SeriesResolver
from lab_probes import wait
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.registry import register_device, set_dev_eui, set_senml_names
from storage.tenants import set_device_enabled

BASE_T = 1_790_000_000.0


def _message(org: str, device: str, seq: int, names: list[str], *, boot: str = "boot-r") -> Message:
    pack = encode_pack(Pack(boot_id=boot, seq=seq, records=tuple(
        Record(name=name, value=1.0 + i, time=BASE_T + seq, unit="Cel") for i, name in enumerate(names))))
    return Message(topic=up_topic(org, device), payload=pack, mid=seq + 1, qos=1, content_type=None,
                   received_us=int(BASE_T * 1e6))


@pytest.fixture
def pipeline(database: str, org: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        conn.commit()
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def _register(database: str, org: str, device: str, gateway: str | None = None) -> None:
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device=device, gateway=gateway, kind="serial")
        conn.commit()


def test_a_device_registered_after_the_cache_was_read_is_stored(pipeline: Pipeline, database: str,
                                                                  org: str) -> None:
    assert pipeline.commit([_message(org, "gw-1", 0, ["gw-1/temperature"])]).packs_stored == 1
    ghost = pipeline.commit([_message(org, "gw-1", 1, ["ghost/temperature"])])   # the cache is read again
    assert [d.reason for d in ghost.dead_letters] == ["unknown_device"]
    _register(database, org, "fresh")                    # onboarded now, while the cache is fresh
    _register(database, org, "behind", gateway="gw-1")
    result = pipeline.commit([_message(org, "fresh", 0, ["fresh/temperature"]),
                              _message(org, "gw-1", 2, ["behind/temperature"])])
    assert (result.packs_stored, result.dead_letters) == (2, ())
    with psycopg.connect(database) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT device FROM series WHERE org = %s", (org,))) == \
            ["behind", "fresh", "gw-1"]


def test_senml_names_declared_after_the_cache_was_read_are_used(pipeline: Pipeline, database: str,
                                                                org: str) -> None:
    _register(database, org, "ow-1")
    urn = "urn:dev:ow:10e2073a01080063"
    message = Message(topic=up_topic(org, "ow-1"), payload=json.dumps([{"n": urn, "u": "Cel", "v": 23.1}]).encode(),
                      mid=1, qos=1, content_type="application/senml+json", received_us=int(BASE_T * 1e6))
    for seq in range(2):   # the first creates partitions (slow); the second reads the cache, fresh
        assert pipeline.commit([_message(org, "gw-1", seq, ["gw-1/temperature"])]).packs_stored == 1
    with psycopg.connect(database) as conn:                   # declared now
        set_senml_names(conn, "ow-1", org=org, base_name=urn, names={"": "temperature"})
        conn.commit()
    result = pipeline.commit([message])
    assert (result.packs_stored, result.dead_letters) == (1, ())
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT quantity FROM series WHERE org = %s AND device = 'ow-1'",
                            (org,)).fetchall() == [("temperature",)]


def _uplink(eui: str, second: int) -> Message:
    at = f"2026-09-01T12:00:{second:02d}Z"
    doc = {"end_device_ids": {"device_id": "node-1", "dev_eui": eui, "application_ids": {"application_id": "app"}},
           "received_at": at, "uplink_message": {"f_port": 1, "f_cnt": second, "frm_payload": "AWcBEA==",
                                                 "decoded_payload": {"temperature_1": 27.2}, "received_at": at}}
    return Message(topic="v3/app@citylab/devices/node-1/up", payload=json.dumps(doc).encode(), mid=second + 1,
                   qos=1, content_type=None, received_us=int(BASE_T * 1e6))


def test_a_dev_eui_set_after_the_cache_was_read_is_found(pipeline: Pipeline, database: str, org: str) -> None:
    _register(database, org, "lora-1")
    for second in range(2):  # the second reads the DevEUIs again (the first may take long: partitions)
        letters = pipeline.commit([_uplink("00000000000000AD", second)]).dead_letters
        assert [d.reason for d in letters] == ["unknown_dev_eui"]
    with psycopg.connect(database) as conn:
        set_dev_eui(conn, "lora-1", "70B3D57ED0000099", org=org)
        conn.commit()
    result = pipeline.commit([_uplink("70B3D57ED0000099", 2)])
    assert (result.packs_stored, result.dead_letters) == (1, ())


def test_a_cached_refusal_is_looked_up_again(pipeline: Pipeline, database: str, org: str) -> None:
    _register(database, org, "air-1")
    with psycopg.connect(database) as conn:
        set_device_enabled(conn, org=org, device="air-1", enabled=False)
        conn.commit()
    first = pipeline.commit([_message(org, "air-1", 0, ["air-1/temperature"])])
    assert [d.reason for d in first.dead_letters] == ["device_disabled"]
    with psycopg.connect(database) as conn:                 # enabled again, moved behind gw-1
        set_device_enabled(conn, org=org, device="air-1", enabled=True)
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        conn.commit()
    seqs = itertools.count()

    def stored():  # type: ignore[no-untyped-def]
        result = pipeline.commit([_message(org, "gw-1", next(seqs), ["air-1/temperature"], boot="boot-s")])
        if not result.packs_stored:
            assert [d.reason for d in result.dead_letters] == ["not_behind_gateway"]
        return result.packs_stored and result

    # its name may be looked up again a reread interval later
    result = wait(stored, 10, "the device's new gateway to be read again")
    assert result.packs_stored == 1


def test_a_flood_of_unknown_devices_does_not_query_per_pack(pipeline: Pipeline, org: str) -> None:
    # one name re-read once (a long per-name interval), whatever the number of its packs
    resolver = pipeline.resolver = SeriesResolver(pipeline._meta, on_new_series=pipeline._set_bounds,
                                                  reread_interval_s=3600.0)
    flood = [_message(org, "gw-1", seq, [f"ghost-{seq % 5}/temperature"]) for seq in range(500)]
    result = pipeline.commit(flood)
    assert result.packs_stored == 0
    assert len(result.dead_letters) == 500
    assert {d.reason for d in result.dead_letters} == {"unknown_device"}
    assert {d.detail for d in result.dead_letters} == {
        f"reading 'ghost-{i}/temperature' names unregistered device 'ghost-{i}'" for i in range(5)}
    assert resolver.registry_reads == 1 + 5      # the whole registry once, each unknown name once

    # many names: the overall budget caps the lookups
    resolver = pipeline.resolver = SeriesResolver(pipeline._meta, on_new_series=pipeline._set_bounds,
                                                  reread_per_s=5.0)
    names = [_message(org, "gw-1", seq, [f"nobody-{seq}/temperature"], boot="boot-n") for seq in range(500)]
    started = time.monotonic()
    result = pipeline.commit(names)
    elapsed = time.monotonic() - started
    assert {d.reason for d in result.dead_letters} == {"unknown_device"} and len(result.dead_letters) == 500
    assert resolver.registry_reads <= 1 + 5 + 5 * elapsed + 1
    assert resolver.registry_reads < 500
