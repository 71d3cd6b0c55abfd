"""Helpers of the ledger tests: what the firmware emitted, what reached the database."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_sim import read_ledger
from protocol.senml import decode_pack

Line = tuple[tuple[str, float], ...]  # the (quantity, value) readings of one line, sorted


@dataclass
class Platform:
    """Ingest (in a thread) writing into the test's database, and what reached it."""

    database: str
    service: Any
    thread: threading.Thread
    stop_event: threading.Event

    def rows(self, devices: list[str]) -> list[tuple[str, str, int, float]]:
        """(device, quantity, time in UTC microseconds, value) of every stored reading."""
        with psycopg.connect(self.database) as conn:
            return conn.execute(
                "SELECT s.device, s.quantity, (extract(epoch FROM r.time) * 1000000)::bigint, r.value"
                " FROM readings r JOIN series s ON s.id = r.series_id WHERE s.device = ANY(%s)",
                (devices,),
            ).fetchall()

    def lines(self, devices: list[str]) -> dict[str, list[Line]]:
        """Per device, the stored lines in time order (a line: the readings of one edge stamp)."""
        grouped: dict[tuple[str, int], list[tuple[str, float]]] = {}
        for device, quantity, t_us, value in self.rows(devices):
            grouped.setdefault((device, t_us), []).append((quantity, value))
        out: dict[str, list[Line]] = {d: [] for d in devices}
        for (device, _), items in sorted(grouped.items()):
            out[device].append(tuple(sorted(items)))
        return out

    def counters(self) -> dict[str, int]:
        with psycopg.connect(self.database) as conn:
            return dict(conn.execute("SELECT name, value FROM ingest_counters").fetchall())


def ledger_lines(path: Path) -> dict[str, list[Line]]:
    """Per sensor, the lines the firmware emitted, in emission order."""
    lines: dict[tuple[str, int, int], list[tuple[str, float]]] = {}
    for r in read_ledger(path):  # emission order; a line's readings are recorded together
        lines.setdefault((r.sensor_id, r.boot, r.seq), []).append((r.quantity, r.value))
    out: dict[str, list[tuple[tuple[str, float], ...]]] = {}
    for (sensor, _, _), items in lines.items():
        out.setdefault(sensor, []).append(tuple(sorted(items)))
    return out


class Witness:
    """A persistent-session subscriber: the order in which packs reached the broker's subscribers."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.arrivals: list[tuple[str | None, int | None]] = []
        self._lock = threading.Lock()
        c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"witness-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        c.on_connect = lambda client, *a: client.subscribe(topic, qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(min_delay=0.2, max_delay=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        c.connect(host, port, clean_start=False, properties=props)
        c.loop_start()
        self.client = c

    def _on_message(self, client: paho.Client, userdata: object, m: paho.MQTTMessage) -> None:
        ct = getattr(m.properties, "ContentType", None) if m.properties else None
        pack = decode_pack(bytes(m.payload), content_type=ct)
        with self._lock:
            self.arrivals.append((pack.boot_id, pack.seq))

    def first_arrivals(self) -> list[tuple[str | None, int | None]]:
        seen: set[tuple[str | None, int | None]] = set()
        out = []
        with self._lock:
            for key in self.arrivals:
                if key not in seen:
                    seen.add(key)
                    out.append(key)
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def queued_packs(db: Path) -> list[tuple[str, int, bytes]]:
    """(boot_id, seq, body) of every pack in an agent's SQLite buffer."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT boot_id, seq, body FROM packs ORDER BY id").fetchall()
    finally:
        conn.close()



def rows_in(path: Path, table: str) -> int:
    """How many rows a table of an SQLite file holds now (a ledger's `faults`, a buffer's `packs`)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()
