"""Flags that depend on a reading's past, with a device's packs alternating between two workers.

Two pipelines (two workers' detectors and connections, `shared=True` as on a shared
subscription) commit alternate packs of every device, the two packs of a device in flight at
the same moment: each detector sees every other pack of a series, and the hole before each of
its packs is the other worker's pack. Those holes are not gaps: nothing is flagged on the clean
signal. A real gap (ten readings missing) is flagged once, with the score of the stored times,
and a silence counts from the newest reading any worker stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from storage.alarm_rules import RuleScope
from storage.alarms import AlarmFilter, create_rule, list_alarms
from storage.registry import register_device

T0 = 1_790_000_000.0
WORKERS = 2
DEVICES = 4
PACKS = 40          # per device: 20 per worker, 1,000 readings, well past the 300 of warm-up
READINGS = 50       # per pack, one a second
GAP_DEVICE, GAP_SEQ, MISSING = "d00", 30, 10  # d00 is silent for 10 readings before its pack 30


def _start(device: str, seq: int) -> float:
    late = MISSING if device == GAP_DEVICE and seq >= GAP_SEQ else 0
    return T0 + seq * READINGS + late


def _message(org: str, device: str, seq: int) -> Message:
    t = _start(device, seq)
    # the benchmarks' clean signal: a slow saw-tooth in exact binary fractions
    records = tuple(Record(f"{device}/temperature", 20.0 + ((seq * READINGS + i) % 64) * 0.125, t + i, "Cel")
                    for i in range(READINGS))
    return Message(topic=up_topic(org, device), payload=encode_pack(Pack("boot-1", seq, records)), mid=seq + 1,
                   qos=1, content_type=None, received_us=int(T0 * 1e6))


@pytest.fixture
def workers(database: str, org: str) -> Iterator[list[Pipeline]]:
    """Two shared pipelines that committed every pack, alternately, two at a time."""
    devices = [f"d{i:02d}" for i in range(DEVICES)]
    with psycopg.connect(database) as conn:
        for device in devices:
            register_device(conn, org=org, device=device, kind="sensor")
    pipelines = [Pipeline(database, shared=True) for _ in range(WORKERS)]
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def work(w: int) -> None:
        try:
            for first in range(0, PACKS, WORKERS):
                # packs `first` and `first + 1` of every device, one per worker, committed together
                batch = [_message(org, device, first + w) for device in devices]
                start.wait(30)
                pipelines[w].commit(batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        yield pipelines
    finally:
        for pipeline in pipelines:
            pipeline.close()


def test_alternate_packs_flag_only_the_real_gap(workers: list[Pipeline], database: str) -> None:
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == DEVICES * PACKS * READINGS
        flags = conn.execute(
            "SELECT s.device, a.kind, (extract(epoch FROM a.time))::float8, a.score FROM anomalies a"
            " JOIN series s ON s.id = a.series_id").fetchall()
    assert [(device, kind, at) for device, kind, at, _ in flags] == [(GAP_DEVICE, "gap", _start(GAP_DEVICE, GAP_SEQ))]
    # (Δt / expected − 1) / (gap_factor − 1) with Δt = 11 s, 1 s expected, gap_factor 10
    gap = (11.0 / 1.0 - 1.0) / (10.0 - 1.0)
    assert abs(flags[0][3] - (1.0 - 1.0 / (1.0 + gap))) < 1e-9


def test_a_silence_counts_from_the_newest_reading_of_any_worker(workers: list[Pipeline], database: str,
                                                                org: str) -> None:
    with psycopg.connect(database) as conn:
        create_rule(conn, org=org, name="d01-silent", kind="silence", scope=RuleScope(device="d01"), intervals=3)
    # the last pack went to the second worker: the first one's newest reading of d01 is a pack older
    last_us = int((_start("d01", PACKS - 1) + READINGS - 1) * 1e6)
    first = workers[0]
    first.rules.refresh(force=True)
    first.check_alarms(last_us + 2_000_000)
    with psycopg.connect(database) as conn:
        assert list_alarms(conn, org=org, where=AlarmFilter(kind="silence")) == []
    first.check_alarms(last_us + 5_000_000)
    with psycopg.connect(database) as conn:
        (alarm,) = list_alarms(conn, org=org, where=AlarmFilter(kind="silence"))
    assert (alarm.device, alarm.state) == ("d01", "open")
    assert alarm.opened_at.timestamp() == last_us / 1e6 + 3  # three stored intervals after the newest reading
