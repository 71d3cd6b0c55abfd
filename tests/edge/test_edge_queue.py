"""The SQLite store-and-forward queue: durable, ordered, pruned by watermark, drops oldest."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.errors import QueueError
from edge.queue import PackQueue


def test_packs_survive_reopen_in_order(tmp_path: Path) -> None:
    path = tmp_path / "buffer.sqlite"
    with PackQueue(path, boot_id="boot-a") as q:
        q.put(b"a0", 0, 3)
        q.put_many([(b"a1", 1, 2), (b"a2", 2, 1)])
        assert q.depth == 3
    with PackQueue(path, boot_id="boot-b") as q:  # the agent restarted: new boot id
        assert q.depth == 3
        q.put(b"b0", 0, 5)
        packs = q.after(0, limit=10)
        assert [(p.boot_id, p.seq, p.body, p.readings) for p in packs] == [
            ("boot-a", 0, b"a0", 3),
            ("boot-a", 1, b"a1", 2),
            ("boot-a", 2, b"a2", 1),
            ("boot-b", 0, b"b0", 5),
        ]
        assert [p.seq for p in q.after(packs[1].id, limit=10)] == [2, 0]
        assert q.get(packs[0].id) == packs[0]


def test_prune_deletes_only_that_boot_up_to_seq(tmp_path: Path) -> None:
    with PackQueue(tmp_path / "b.sqlite", boot_id="old") as q:
        q.put_many([(b"x", s, 1) for s in range(5)])
    with PackQueue(tmp_path / "b.sqlite", boot_id="new") as q:
        q.put_many([(b"y", s, 1) for s in range(3)])
        assert len(q.prune("new", 1)) == 2
        assert len(q.prune("old", 3)) == 4
        assert len(q.prune("old", 3)) == 0, "a repeated watermark is harmless"
        assert [(p.boot_id, p.seq) for p in q.after(0)] == [("old", 4), ("new", 2)]
        assert q.depth == 2


def test_prune_deletes_only_what_the_watermark_covers(tmp_path: Path) -> None:
    with PackQueue(tmp_path / "b.sqlite", boot_id="boot") as q:
        q.put_many([(b"x", s, 1) for s in range(10)])
        # ingest has 0..2 and 5, 7..8; 3, 4, 6 and 9 are missing (dropped on the way, or not arrived)
        assert len(q.prune("boot", 2, [(5, 5), (7, 8)])) == 6
        assert [p.seq for p in q.after(0)] == [3, 4, 6, 9]
        assert len(q.prune("boot", -1, [(9, 9)])) == 1, "no prefix yet, a range alone"
        assert [p.seq for p in q.after(0)] == [3, 4, 6]
        assert q.depth == 3


def test_drop_oldest_when_full_is_counted_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with PackQueue(path, boot_id="b", max_packs=3) as q:
        q.put_many([(b"p", s, 10) for s in range(5)])
        q.put(b"p", 5, 7)
        assert q.depth == 3
        assert [p.seq for p in q.after(0)] == [3, 4, 5]
        assert q.dropped == 3 and q.dropped_readings == 30
    with PackQueue(path, boot_id="c", max_packs=3) as q:
        assert q.dropped == 3


def test_writes_are_committed_for_other_readers(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with PackQueue(path, boot_id="b") as q:
        q.put(b"p", 0, 1)
        other = sqlite3.connect(path)
        assert other.execute("SELECT count(*) FROM packs").fetchone() == (1,)
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.close()


def test_duplicate_seq_is_an_error(tmp_path: Path) -> None:
    with PackQueue(tmp_path / "b.sqlite", boot_id="b") as q:
        q.put(b"p", 0, 1)
        with pytest.raises(QueueError):
            q.put(b"p", 0, 1)
        assert q.depth == 1


def test_unusable_file_is_a_queue_error(tmp_path: Path) -> None:
    (tmp_path / "notdb").write_bytes(b"this is not a database" * 100)
    with pytest.raises(QueueError):
        PackQueue(tmp_path / "notdb", boot_id="b")
