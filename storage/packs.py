"""Ingest bookkeeping: de-duplication, watermarks, dead letters and counters.

All of it runs inside the transaction that stores the readings, so that what the
counters say and what the tables hold never disagree, whatever crashes when.

`ingest_packs` holds one row per pack the platform has taken responsibility for:
stored (`readings` >= 1) or dead-lettered with a readable identity (`readings` = 0,
its payload is in `dead_letters`). The committed watermark of an (org, device, boot) is
the highest seq whose every predecessor 0..seq has such a row: a pack the broker
dropped leaves a hole that holds the watermark back until the edge sends it again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from storage.errors import map_errors

__all__ = ["DeadLetter", "PackKey", "add_counters", "add_org_counters", "advance_watermarks", "claim_packs",
           "insert_dead_letters"]

# NUL and UTF-16 surrogates: no PostgreSQL text can hold them.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class PackKey:
    org: str
    device: str
    boot_id: str
    seq: int
    readings: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A pack refused with its reason. With `boot_id` and `seq` (its identity was readable
    and storable) the refusal also accounts for the pack: see `claim_packs`."""

    topic: str
    device: str | None
    reason: str
    detail: str
    payload: bytes
    org: str | None = None   # the tenant it belongs to (None: not known, e.g. an unknown DevEUI)
    boot_id: str | None = None
    seq: int | None = None


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


# Several workers commit packs of one (org, device, boot) at once (a shared subscription
# hands consecutive packs to different workers). Under READ COMMITTED a transaction does
# not see the packs another has not committed yet, so two of them could each stop below
# the other's pack and leave the stored watermark short of packs both committed (never
# past a hole: only late). Before advancing, each transaction takes a lock per key,
# held until it commits: the later of two sees the earlier's packs, so the last commit
# of a key always moves its watermark to the end of the run. The locks are transaction
# advisory locks on a hash bucket of the key (a bounded count per transaction: they use
# PostgreSQL's shared lock table), taken in bucket order (no deadlock between workers).
_LOCK_CLASS = 0x63_6C_77_6D  # "clwm": the advisory lock space of the watermarks
_LOCK_BUCKETS = 256
_LOCK_WATERMARKS = """
SELECT count(pg_advisory_xact_lock(%(class)s::integer, b.bucket))
FROM (SELECT DISTINCT abs(hashtextextended(k.org || '/' || k.device || '/' || k.boot_id, 0)
                          %% %(buckets)s)::integer AS bucket
      FROM unnest(%(orgs)s::text[], %(devices)s::text[], %(boots)s::text[]) AS k(org, device, boot_id)
      ORDER BY 1) b
"""

# For each key, from its stored watermark w (-1: none yet): when pack w + 1 is there (one
# index probe; false while a hole stays open), the packs above w in seq order form an
# unbroken run exactly while seq - row_number() = w; the run's end is the new watermark.
# LATERAL keeps every look-up an index scan of one (org, device, boot_id); a run is read
# at most _RUN_LIMIT packs per call (the next commit goes on from there).
_RUN_LIMIT = 10_000
_ADVANCE = """
WITH reached AS (
    SELECT k.org, k.device, k.boot_id, coalesce(run.seq, w.seq, -1) AS seq
    FROM unnest(%(orgs)s::text[], %(devices)s::text[], %(boots)s::text[]) AS k(org, device, boot_id)
    LEFT JOIN LATERAL (
        SELECT w.seq FROM ingest_watermarks w
        WHERE w.org = k.org AND w.device = k.device AND w.boot_id = k.boot_id
    ) w ON true
    LEFT JOIN LATERAL (
        SELECT max(x.seq) AS seq FROM (
            SELECT p.seq, p.seq - row_number() OVER (ORDER BY p.seq) AS base FROM (
                SELECT p.seq FROM ingest_packs p
                WHERE p.org = k.org AND p.device = k.device AND p.boot_id = k.boot_id
                  AND p.seq > coalesce(w.seq, -1)
                ORDER BY p.seq LIMIT %(limit)s
            ) p
            WHERE EXISTS (SELECT 1 FROM ingest_packs q
                          WHERE q.org = k.org AND q.device = k.device AND q.boot_id = k.boot_id
                            AND q.seq = coalesce(w.seq, -1) + 1)
        ) x WHERE x.base = coalesce(w.seq, -1)
    ) run ON true
), saved AS (
    INSERT INTO ingest_watermarks (org, device, boot_id, seq)
    SELECT org, device, boot_id, seq FROM reached WHERE seq >= 0
    ON CONFLICT (org, device, boot_id) DO UPDATE
    SET seq = greatest(ingest_watermarks.seq, excluded.seq), updated_at = now()
    WHERE ingest_watermarks.seq < excluded.seq
)
SELECT org, device, boot_id, seq FROM reached
"""


def advance_watermarks(
    conn: psycopg.Connection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], int]:
    """Move the watermark of each (org, device, boot_id) to the highest seq with no hole below it.

    Call after `claim_packs` in the same transaction. Returns the watermark of every
    key, -1 where seq 0 itself is not accounted for yet.
    """
    if not keys:
        return {}
    keys = list(dict.fromkeys(keys))
    with map_errors("advance watermarks"):
        # a statement of its own: the advance's snapshot is taken once the locks are held
        conn.execute(_LOCK_WATERMARKS, {"orgs": [k[0] for k in keys], "devices": [k[1] for k in keys],
                                        "boots": [k[2] for k in keys], "buckets": _LOCK_BUCKETS,
                                        "class": _LOCK_CLASS})
        rows = conn.execute(_ADVANCE, {"orgs": [k[0] for k in keys], "devices": [k[1] for k in keys],
                                       "boots": [k[2] for k in keys], "limit": _RUN_LIMIT}).fetchall()
    return {(org, device, boot_id): seq for org, device, boot_id, seq in rows}


def insert_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> None:
    if not letters:
        return
    with map_errors("insert dead letters"), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (org, topic, device, reason, detail, payload) VALUES (%s, %s, %s, %s, %s, %s)",
            [(d.org and _storable(d.org), _storable(d.topic), d.device and _storable(d.device), _storable(d.reason),
              _storable(d.detail), d.payload) for d in letters],
        )


def _storable(text: str) -> str:
    """A dead letter must never be refused itself: what text cannot hold is replaced."""
    return _UNSTORABLE.sub("\ufffd", text)


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
