"""The durable store-and-forward queue: SenML packs in SQLite until committed.

A pack is written here *before* it is published and deleted only when the platform
reports it committed (the retained watermark on ``lab/{org}/{device}/committed``),
not on PUBACK: the broker's persistence is a periodic snapshot and may lose what it
acknowledged. The file uses WAL with ``synchronous=FULL``; each :meth:`PackQueue.put_many`
is one transaction (one fsync) for a batch of packs.

Order: packs are drained in insertion order (``id``), so packs left over from an
earlier boot of the agent go out before the current boot's. When the queue holds
more than ``max_packs``, the *oldest* packs are dropped and counted in the persisted
``dropped`` counter: after a long outage the newest data is the most useful.

Schema::

    packs(id INTEGER PRIMARY KEY AUTOINCREMENT, boot_id TEXT, seq INTEGER,
          body BLOB, readings INTEGER, queued_at REAL, UNIQUE(boot_id, seq))
    counters(name TEXT PRIMARY KEY, value INTEGER)      -- 'dropped', 'dropped_readings'
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edge.errors import QueueError

__all__ = ["PackQueue", "QueuedPack"]

log = logging.getLogger("edge.queue")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    boot_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    readings INTEGER NOT NULL,
    queued_at REAL NOT NULL,
    UNIQUE (boot_id, seq)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0), ('dropped_readings', 0);
"""


@dataclass(frozen=True, slots=True)
class QueuedPack:
    """One encoded pack waiting for its commit."""

    id: int
    boot_id: str
    seq: int
    body: bytes
    readings: int


class PackQueue:
    """SQLite-backed FIFO of encoded packs; use from one thread (the agent loop)."""

    def __init__(self, path: Path | str, *, boot_id: str, max_packs: int = 100_000) -> None:
        if max_packs < 1:
            raise QueueError(f"max_packs must be >= 1, not {max_packs}")
        self.path = Path(path)
        self.boot_id = boot_id
        self.max_packs = max_packs
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._depth = self._db.execute("SELECT count(*) FROM packs").fetchone()[0]
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open pack queue {self.path}: {exc}") from exc

    # -- writing ----------------------------------------------------------------
    def put(self, body: bytes, seq: int, reading_count: int) -> None:
        """Store one pack of the current boot (one transaction)."""
        self.put_many([(body, seq, reading_count)])

    def put_many(self, packs: Iterable[tuple[bytes, int, int]]) -> None:
        """Store packs ``(body, seq, reading_count)`` of the current boot in one transaction,
        then drop the oldest packs beyond ``max_packs`` in the same transaction."""
        now = time.time()
        rows = [(self.boot_id, seq, body, count, now) for body, seq, count in packs]
        if not rows:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO packs (boot_id, seq, body, readings, queued_at) VALUES (?, ?, ?, ?, ?)", rows
            )
            depth = self._depth + len(rows)
            excess = depth - self.max_packs
            if excess > 0:
                dropped = self._db.execute(
                    "DELETE FROM packs WHERE id IN (SELECT id FROM packs ORDER BY id LIMIT ?)"
                    " RETURNING readings",
                    (excess,),
                ).fetchall()
                self._db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'dropped'", (len(dropped),)
                )
                self._db.execute(
                    "UPDATE counters SET value = value + ? WHERE name = 'dropped_readings'",
                    (sum(r for (r,) in dropped),),
                )
                depth -= len(dropped)
                log.warning("queue full (%d packs): dropped the %d oldest", self.max_packs, len(dropped))
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise QueueError(f"cannot store {len(rows)} pack(s) in {self.path}: {exc}") from exc
        self._depth = depth

    def prune(self, boot_id: str, seq: int, ranges: Iterable[tuple[int, int]] = ()) -> list[int]:
        """Delete every pack of ``boot_id`` with a seq <= ``seq`` or inside one of the
        inclusive ``ranges``; return their ids. Nothing else is deleted."""
        spans = [(-1, seq)] + [(low, high) for low, high in ranges]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            ids = []
            for low, high in spans:
                if high < 0:
                    continue
                ids += [
                    i
                    for (i,) in self._db.execute(
                        "DELETE FROM packs WHERE boot_id = ? AND seq BETWEEN ? AND ? RETURNING id",
                        (boot_id, low, high),
                    ).fetchall()
                ]
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise QueueError(f"cannot prune {self.path}: {exc}") from exc
        self._depth -= len(ids)
        return ids

    # -- reading ----------------------------------------------------------------
    def after(self, pack_id: int, *, limit: int = 100) -> list[QueuedPack]:
        """Up to ``limit`` packs with an id greater than ``pack_id``, oldest first."""
        rows = self._db.execute(
            "SELECT id, boot_id, seq, body, readings FROM packs WHERE id > ? ORDER BY id LIMIT ?",
            (pack_id, limit),
        ).fetchall()
        return [QueuedPack(*row) for row in rows]

    def get(self, pack_id: int) -> QueuedPack | None:
        row = self._db.execute(
            "SELECT id, boot_id, seq, body, readings FROM packs WHERE id = ?", (pack_id,)
        ).fetchone()
        return QueuedPack(*row) if row else None

    def last_seq(self, boot_id: str) -> int | None:
        row = self._db.execute("SELECT max(seq) FROM packs WHERE boot_id = ?", (boot_id,)).fetchone()
        return row[0]

    @property
    def depth(self) -> int:
        """Packs waiting for their commit."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Packs dropped (oldest first) because the queue was full, over the file's lifetime."""
        return self._counter("dropped")

    @property
    def dropped_readings(self) -> int:
        return self._counter("dropped_readings")

    def _counter(self, name: str) -> int:
        return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PackQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
