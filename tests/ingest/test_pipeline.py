"""The batch pipeline against a real PostgreSQL: storage, de-duplication, dead letters, aggregates."""

from __future__ import annotations

import random

import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from raw_aggregates import assert_aggregates_equal_raw
from storage.registry import register_device

BASE_T = 1_790_000_000.0  # a fixed instant in 2026, whole seconds


def _register(url: str, org: str) -> None:
    with psycopg.connect(url) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
        register_device(conn, org=org, device="air-2", gateway="gw-1", kind="serial")
        register_device(conn, org="other", device="gw-other", kind="gateway")


def _message(org: str, device: str, payload: bytes, mid: int = 1) -> Message:
    return Message(topic=up_topic(org, device), payload=payload, mid=mid, qos=1, content_type=None,
                   received_us=int(BASE_T * 1e6))


def _pack(seq: int, records: list[tuple[str, float, float]], boot: str = "boot-a") -> bytes:
    return encode_pack(Pack(boot_id=boot, seq=seq, records=tuple(
        Record(name=name, value=value, time=t, unit="Cel") for name, value, t in records)))


def _counters(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())


@pytest.fixture
def pipeline(database: str, org: str):
    _register(database, org)
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def test_packs_are_stored_with_exact_values_and_times(pipeline: Pipeline, database: str, org: str) -> None:
    records = [("air-1/temperature", 20.0 + i / 8, BASE_T + i * 0.25) for i in range(10)]
    result = pipeline.commit([_message(org, "gw-1", _pack(0, records))])
    assert (result.packs_stored, result.readings_stored, result.packs_dead_lettered) == (1, 10, 0)
    assert result.watermarks[(org, "gw-1")].seq == 0
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM r.time)::float8, r.value FROM readings r JOIN series s ON s.id = r.series_id"
            " WHERE s.device = 'air-1' AND s.quantity = 'temperature' ORDER BY r.time").fetchall()
        unit = conn.execute("SELECT unit FROM series WHERE device = 'air-1'").fetchone()[0]
    assert rows == [(t, v) for _, v, t in records]
    assert unit == "Cel"


def test_redelivered_packs_are_stored_once(pipeline: Pipeline, database: str, org: str) -> None:
    packs = [_message(org, "gw-1", _pack(seq, [("air-1/temperature", float(seq), BASE_T + seq)]), seq)
             for seq in range(5)]
    pipeline.commit(packs[:3])
    again = pipeline.commit(packs)  # 0..2 redelivered, 3..4 new
    assert (again.packs_stored, again.packs_duplicate) == (2, 3)
    assert again.watermarks[(org, "gw-1")].seq == 4
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 5
        counters = _counters(conn)
    assert counters["packs_stored"] == 5 and counters["packs_duplicate"] == 3
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"]


def test_bad_packs_become_dead_letters_with_reasons(pipeline: Pipeline, database: str, org: str) -> None:
    good = _pack(0, [("air-1/temperature", 1.0, BASE_T)])
    messages = [
        _message(org, "gw-1", good, 1),
        _message(org, "gw-1", b"\x00not senml at all", 2),
        _message(org, "ghost-7", _pack(0, [("ghost-7/temperature", 1.0, BASE_T)]), 3),
        _message(org, "gw-1", _pack(1, [("stray-9/temperature", 1.0, BASE_T)]), 4),
        _message(org, "gw-other", _pack(0, [("gw-other/temperature", 1.0, BASE_T)]), 5),
        _message(org, "air-2", _pack(0, [("air-1/temperature", 1.0, BASE_T)]), 6),
        Message(topic="lab/x", payload=b"[]", mid=7, qos=1, content_type=None, received_us=0),
    ]
    result = pipeline.commit(messages)
    assert (result.packs_stored, result.packs_dead_lettered) == (1, 6)
    with psycopg.connect(database) as conn:
        letters = conn.execute("SELECT topic, device, reason, detail, payload FROM dead_letters ORDER BY id").fetchall()
        counters = _counters(conn)
    reasons = [row[2] for row in letters]
    # gw-other is a device of another org: under this org's topic the name is simply unknown
    assert reasons == ["not_senml", "unknown_device", "unknown_device", "unknown_device", "not_behind_gateway",
                       "bad_topic"]
    assert letters[0][4] == b"\x00not senml at all" and letters[0][0] == up_topic(org, "gw-1")
    assert "stray-9" in letters[2][3]
    assert all(detail for *_, detail, _ in letters)
    assert counters["packs_received"] == 7
    assert counters["packs_received"] == counters["packs_stored"] + counters["packs_dead_lettered"]


def test_unit_change_is_refused(pipeline: Pipeline, org: str) -> None:
    pipeline.commit([_message(org, "gw-1", _pack(0, [("air-1/temperature", 1.0, BASE_T)]))])
    other_unit = encode_pack(Pack("boot-a", 1, (Record("air-1/temperature", 1.0, BASE_T, "V"),)))
    result = pipeline.commit([_message(org, "gw-1", other_unit)])
    assert [d.reason for d in result.dead_letters] == ["unit_mismatch"]
    # a unit of the same dimension converts into the series' unit
    kelvin = encode_pack(Pack("boot-a", 2, (Record("air-1/temperature", 300.0, BASE_T + 1, "K"),)))
    assert pipeline.commit([_message(org, "gw-1", kelvin)]).readings_stored == 1


def test_aggregates_equal_the_raw_table_after_out_of_order_replay(pipeline: Pipeline, database: str,
                                                                   org: str) -> None:
    rng = random.Random(7)
    readings = [(f"air-{1 + i % 2}/temperature", round(rng.gauss(15, 5), 3), BASE_T + rng.uniform(0, 900))
                for i in range(3000)]
    packs = [_pack(seq, readings[seq * 50:(seq + 1) * 50]) for seq in range(60)]
    order = list(range(60))
    rng.shuffle(order)
    # in shuffled batches, with some packs delivered twice
    for start in range(0, 60, 9):
        chunk = order[start:start + 9] + order[max(0, start - 3):start]
        pipeline.commit([_message(org, "gw-1", packs[i], i) for i in chunk])
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 3000
        assert_aggregates_equal_raw(conn, at_least=21)


def test_registry_changes_take_effect_without_a_restart(pipeline: Pipeline, database: str,
                                                                 org: str) -> None:
    first = pipeline.commit([_message(org, "gw-1", _pack(0, [("air-1/temperature", 1.0, BASE_T)]))])
    assert first.packs_stored == 1
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE devices SET gateway = NULL WHERE device = 'air-1'")
    pipeline.resolver._checked_at = float("-inf")  # the next batch looks again (every 2 s in service)
    second = pipeline.commit([_message(org, "gw-1", _pack(1, [("air-1/temperature", 2.0, BASE_T + 1)]))])
    assert [d.reason for d in second.dead_letters] == ["not_behind_gateway"]
