"""The ledger: every reading the simulated firmware put on the wire.

It is an SQLite file (WAL, so tests can read it while the simulator writes) with two
tables::

    readings(sensor_id TEXT, boot INTEGER, seq INTEGER, quantity TEXT,
             value REAL, emitted_at REAL, transport TEXT)   -- one row per value
    faults(sensor_id TEXT, boot INTEGER, seq INTEGER, fault TEXT, emitted_at REAL)

``value`` is the value *as a receiver decodes it* (the line or LPP frame is decoded
again before it is recorded), so a test can compare it with what reached the
database for equality. ``seq`` is the line sequence number for serial sensors and
the node's frame counter for LoRa nodes; ``boot`` counts the device's (simulated)
reboots. ``emitted_at`` is UTC seconds when the last byte was written to the pty.
``transport`` is ``serial`` or ``lora``. A reading is recorded only once its whole
line is written: a line that could not be written (nobody reading, buffer full) is
not in the ledger; a line a reader discards after being written (e.g. pyserial
flushes the input on open) still is.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Ledger", "LedgerReading", "read_ledger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor_id TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    quantity TEXT NOT NULL, value REAL NOT NULL, emitted_at REAL NOT NULL,
    transport TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faults (
    sensor_id TEXT NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL,
    fault TEXT NOT NULL, emitted_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LedgerReading:
    sensor_id: str
    boot: int
    seq: int
    quantity: str
    value: float
    emitted_at: float
    transport: str


class Ledger:
    """Append-only ledger, shared by all devices of a process (thread-safe)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def record(
        self,
        sensor_id: str,
        *,
        boot: int,
        seq: int,
        values: Mapping[str, float] | Iterable[tuple[str, float]],
        emitted_at: float,
        transport: str,
    ) -> None:
        items = values.items() if isinstance(values, Mapping) else values
        rows = [(sensor_id, boot, seq, q, float(v), emitted_at, transport) for q, v in items]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def record_fault(self, sensor_id: str, *, boot: int, seq: int, fault: str, emitted_at: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO faults VALUES (?, ?, ?, ?, ?)", (sensor_id, boot, seq, fault, emitted_at)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ledger(path: Path | str) -> list[LedgerReading]:
    """All readings of a ledger file in emission order (opens it read-only)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT sensor_id, boot, seq, quantity, value, emitted_at, transport"
            " FROM readings ORDER BY rowid"
        ).fetchall()
    finally:
        db.close()
    return [LedgerReading(*row) for row in rows]
