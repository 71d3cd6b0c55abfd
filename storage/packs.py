"""Ingest bookkeeping: de-duplication, watermarks, dead letters and counters.

All of it runs inside the transaction that stores the readings, so that what the
counters say and what the tables hold never disagree, whatever crashes when.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from storage.errors import map_errors

__all__ = ["DeadLetter", "PackKey", "add_counters", "add_org_counters", "claim_packs", "insert_dead_letters", "raise_watermarks"]


@dataclass(frozen=True, slots=True)
class PackKey:
    org: str
    device: str
    boot_id: str
    seq: int
    readings: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    device: str | None
    reason: str
    detail: str
    payload: bytes
    org: str | None = None   # the tenant it belongs to (None: not known, e.g. an unknown DevEUI)


def claim_packs(conn: psycopg.Connection, packs: Sequence[PackKey]) -> np.ndarray:
    """Record the packs as stored; True for each pack not stored before (False: a redelivery)."""
    if not packs:
        return np.zeros(0, dtype=bool)
    with map_errors("claim packs"):
        rows = conn.execute(
            "INSERT INTO ingest_packs (org, device, boot_id, seq, readings)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::integer[])"
            " ON CONFLICT DO NOTHING RETURNING org, device, boot_id, seq",
            ([p.org for p in packs], [p.device for p in packs], [p.boot_id for p in packs], [p.seq for p in packs],
             [p.readings for p in packs]),
        ).fetchall()
    # A key inserted now is fresh once: a second copy in the same batch is a redelivery too.
    fresh = set(rows)
    claimed = np.zeros(len(packs), dtype=bool)
    for i, p in enumerate(packs):
        key = (p.org, p.device, p.boot_id, p.seq)
        if key in fresh:
            claimed[i] = True
            fresh.discard(key)
    return claimed


def raise_watermarks(
    conn: psycopg.Connection, marks: Mapping[tuple[str, str, str], int]
) -> dict[tuple[str, str, str], int]:
    """Raise the committed watermark of each (org, device, boot_id) to at least `seq`; return the new ones."""
    if not marks:
        return {}
    keys = list(marks)
    with map_errors("raise watermarks"):
        rows = conn.execute(
            "INSERT INTO ingest_watermarks (org, device, boot_id, seq)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])"
            " ON CONFLICT (org, device, boot_id) DO UPDATE"
            " SET seq = greatest(ingest_watermarks.seq, excluded.seq), updated_at = now()"
            " RETURNING org, device, boot_id, seq",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [marks[k] for k in keys]),
        ).fetchall()
    return {(org, device, boot_id): seq for org, device, boot_id, seq in rows}


def insert_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    with map_errors("insert dead letters"), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (org, topic, device, reason, detail, payload) VALUES (%s, %s, %s, %s, %s, %s)",
            [(d.org, d.topic, d.device, d.reason, d.detail, d.payload) for d in letters],
        )


def add_counters(conn: psycopg.Connection, deltas: Mapping[str, int]) -> None:
    names = [name for name, delta in deltas.items() if delta]
    if not names:
        return
    with map_errors("add counters"):
        conn.execute(
            "UPDATE ingest_counters c SET value = c.value + d.delta"
            " FROM unnest(%s::text[], %s::bigint[]) AS d(name, delta) WHERE c.name = d.name",
            (names, [deltas[n] for n in names]),
        )


def add_org_counters(
    conn: psycopg.Connection, *, stored: Sequence[tuple[str, int]], duplicate: Sequence[str],
    dead: Sequence[DeadLetter],
) -> None:
    """Per-organisation counters of a batch: `stored` (org, readings) per stored pack,
    `duplicate` the org of each redelivered pack, `dead` its dead letters (those of
    no known organisation count lab-wide only)."""
    deltas: dict[tuple[str, str], int] = {}

    def add(org: str, name: str, n: int = 1) -> None:
        deltas[(org, name)] = deltas.get((org, name), 0) + n

    for org, readings in stored:
        add(org, "packs_received")
        add(org, "packs_stored")
        add(org, "readings_stored", readings)
    for org in duplicate:
        add(org, "packs_duplicate")
    for letter in dead:
        if letter.org is not None:
            add(letter.org, "packs_received")
            add(letter.org, "packs_dead_lettered")
    keys = [k for k, v in deltas.items() if v]
    if not keys:
        return
    with map_errors("add organisation counters"):
        conn.execute(
            "INSERT INTO ingest_org_counters AS c (org, name, value)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[])"
            " ON CONFLICT (org, name) DO UPDATE SET value = c.value + excluded.value",
            ([k[0] for k in keys], [k[1] for k in keys], [deltas[k] for k in keys]),
        )
