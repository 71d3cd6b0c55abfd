"""Consecutive packs of one device committed by different workers at the same moment.

A shared subscription hands each message to one worker of the group, so pack n of a
device may be in one worker's transaction while pack n + 1 is in another's. Four
pipelines (four workers' worth of state and connections) commit round after round
together, each round one pack of every device spread over all four: the committed
watermark never passes a hole (one pack is held back until the end), reaches the last
pack of every device once everything is in, and the aggregates the workers merged
equal the raw table.
"""

from __future__ import annotations

import threading

import psycopg

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import up_topic
from raw_aggregates import assert_aggregates_equal_raw
from storage.registry import register_device

T0 = 1_790_000_000.0
WORKERS = 4
DEVICES = 24
ROUNDS = 30
READINGS = 10
HELD = ("d03", 7)  # (device, seq) the "broker" delivers only at the very end


def _message(org: str, device: str, seq: int) -> Message:
    records = tuple(Record(f"{device}/temperature", 20.0 + ((seq * READINGS + i) % 16) * 0.25,
                           T0 + seq * READINGS + i, "Cel") for i in range(READINGS))
    return Message(topic=up_topic(org, device), payload=encode_pack(Pack("boot-1", seq, records)), mid=seq + 1,
                   qos=1, content_type=None, received_us=int(T0 * 1e6))


def _contiguous(conn: psycopg.Connection) -> dict[str, int]:
    """Per device, the highest seq whose predecessors 0..seq are all stored (-1: not even 0)."""
    seqs: dict[str, set[int]] = {}
    for device, seq in conn.execute("SELECT device, seq FROM ingest_packs WHERE boot_id = 'boot-1'").fetchall():
        seqs.setdefault(device, set()).add(seq)
    prefix = {}
    for device, have in seqs.items():
        n = 0
        while n in have:
            n += 1
        prefix[device] = n - 1
    return prefix


def _watermarks(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT device, seq FROM ingest_watermarks WHERE boot_id = 'boot-1'").fetchall())


def test_the_watermark_is_gap_free_and_complete_across_four_workers(database: str, org: str) -> None:
    devices = [f"d{i:02d}" for i in range(DEVICES)]
    with psycopg.connect(database) as conn:
        for device in devices:
            register_device(conn, org=org, device=device, kind="sensor")
    pipelines = [Pipeline(database) for _ in range(WORKERS)]
    published: list[dict] = []  # every watermark a commit result would publish
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def work(w: int) -> None:
        try:
            for seq in range(ROUNDS):
                # pack seq of device d goes to worker (seq + d) % 4: consecutive packs, different workers
                batch = [_message(org, device, seq) for d, device in enumerate(devices)
                         if (seq + d) % WORKERS == w and (device, seq) != HELD]
                start.wait(30)
                result = pipelines[w].commit(batch)
                published.extend({"device": device, "seq": mark.seq} for (_, device), mark in result.watermarks.items())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
    try:
        with psycopg.connect(database, autocommit=True) as watch:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                # gap-free at every moment another client looks
                marks, prefix = _watermarks(watch), _contiguous(watch)
                assert all(seq <= prefix.get(device, -1) for device, seq in marks.items()), (marks, prefix)
                threading.Event().wait(0.01)
            for t in threads:
                t.join()
            assert not errors, errors
            # the held pack's device waits below it; every other device reached its last pack
            marks = _watermarks(watch)
            assert marks[HELD[0]] == HELD[1] - 1
            assert {d: s for d, s in marks.items() if d != HELD[0]} == {d: ROUNDS - 1 for d in devices if d != HELD[0]}
            assert all(m["seq"] < HELD[1] for m in published if m["device"] == HELD[0])
            # the broker delivers the held pack to any worker: the watermark moves to the end
            last = pipelines[1].commit([_message(org, HELD[0], HELD[1])])
            assert last.watermarks[(org, HELD[0])].seq == ROUNDS - 1
            assert _watermarks(watch) == {d: ROUNDS - 1 for d in devices}
            assert watch.execute("SELECT count(*) FROM readings").fetchone()[0] == DEVICES * ROUNDS * READINGS
            assert_aggregates_equal_raw(watch, at_least=DEVICES * ROUNDS * READINGS // 60)
    finally:
        for pipeline in pipelines:
            pipeline.close()
