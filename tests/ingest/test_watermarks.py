"""The committed watermark never passes a hole: it covers only what is stored, and names the rest as ranges."""

from __future__ import annotations

import psycopg
import pytest

from ingest import Message, Pipeline
from protocol.senml import Pack, Record, encode_pack
from protocol.topics import Watermark, decode_watermark, encode_watermark, seq_ranges, up_topic
from storage.registry import register_device

T0 = 1_790_000_000.0


def _message(org: str, seq: int, boot: str = "boot-a") -> Message:
    payload = encode_pack(Pack(boot, seq, (Record("air-1/temperature", float(seq), T0 + seq, "Cel"),)))
    return Message(topic=up_topic(org, "gw-1"), payload=payload, mid=seq + 1, qos=1, content_type=None,
                   received_us=int(T0 * 1e6))


@pytest.fixture
def pipeline(database: str, org: str):
    with psycopg.connect(database) as conn:
        register_device(conn, org=org, device="gw-1", kind="gateway")
        register_device(conn, org=org, device="air-1", gateway="gw-1", kind="serial")
    pipe = Pipeline(database)
    yield pipe
    pipe.close()


def _mark(pipeline: Pipeline, org: str, seqs: list[int], boot: str = "boot-a") -> Watermark:
    result = pipeline.commit([_message(org, s, boot) for s in seqs])
    return result.watermarks[(org, "gw-1")]


def test_a_hole_holds_the_watermark_back_until_the_missing_pack_arrives(pipeline: Pipeline, database: str,
                                                                        org: str) -> None:
    assert _mark(pipeline, org, [0, 1, 3]) == Watermark("boot-a", 1, ((3, 3),))  # 2 was dropped on the way
    assert _mark(pipeline, org, [4, 6, 7]) == Watermark("boot-a", 1, ((4, 4), (6, 7)))
    assert _mark(pipeline, org, [2]) == Watermark("boot-a", 4)   # the hole at 2 is filled: 3 and 4 follow
    assert _mark(pipeline, org, [5]) == Watermark("boot-a", 7)
    assert _mark(pipeline, org, [3]) == Watermark("boot-a", 7)   # a duplicate changes nothing
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT boot_id, seq FROM ingest_watermarks").fetchall() == [("boot-a", 7)]


def test_a_boot_whose_first_packs_never_arrive_still_names_what_is_stored(pipeline: Pipeline, org: str) -> None:
    # an edge whose full buffer dropped its oldest packs: seq 0..9 are gone for good
    mark = _mark(pipeline, org, [10, 11, 12], boot="boot-b")
    assert mark == Watermark("boot-b", -1, ((10, 12),))
    assert decode_watermark(encode_watermark(mark)) == mark
    assert encode_watermark(mark) == b'{"boot_id":"boot-b","ranges":[[10,12]]}'
    assert [s for s in range(14) if mark.covers(s)] == [10, 11, 12]


def test_seq_ranges_merge_and_are_bounded() -> None:
    assert seq_ranges([5, 3, 4, 9, 9, 11, 10]) == ((3, 5), (9, 11))
    assert len(seq_ranges(list(range(0, 2000, 2)))) == 256


def test_the_migration_recomputes_old_watermarks_without_holes(database: str, org: str) -> None:
    from storage.migrate import migrations

    [sql] = [m.sql for m in migrations() if m.version == 5]
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO ingest_packs (org, device, boot_id, seq, readings) VALUES"
                     " ('o1', 'gw-a', 'b', 0, 1), ('o1', 'gw-a', 'b', 1, 1), ('o1', 'gw-a', 'b', 3, 1),"
                     " ('o1', 'gw-b', 'b', 1, 1), ('o1', 'gw-c', 'b', 0, 1), ('o2', 'gw-a', 'b', 2, 1)")
        # as the old ingest left them: the highest committed seq, past the holes
        conn.execute("INSERT INTO ingest_watermarks (org, device, boot_id, seq) VALUES"
                     " ('o1', 'gw-a', 'b', 3), ('o1', 'gw-b', 'b', 1), ('o1', 'gw-c', 'b', 0), ('o2', 'gw-a', 'b', 2)")
        conn.execute(sql)
        assert conn.execute("SELECT org, device, seq FROM ingest_watermarks ORDER BY org, device").fetchall() == [
            ("o1", "gw-a", 1), ("o1", "gw-c", 0)]
