"""One batch of messages through decode → registry → stream → storage, in one transaction.

The batch is the unit of commitment: its readings, aggregate partials, anomalies,
dead letters, pack claims, watermarks and counters commit together or not at
all. Only after `commit()` returns may the caller acknowledge the messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ingest.decode import DecodedPack, decode_message
from ingest.message import Message
from ingest.registry import SeriesResolver
from protocol.quantities import QUANTITIES
from protocol.topics import Watermark
from storage.db import capabilities, connect
from storage.errors import map_errors
from storage.packs import DeadLetter, PackKey, add_counters, add_org_counters, claim_packs, insert_dead_letters, raise_watermarks
from storage.registry import series_quantities
from storage.retention import RetentionPolicy, drop_expired_partitions
from storage.timeseries import TimeSeriesWriter
from stream import ANOMALY_KINDS, BatchResult, StreamProcessor, params_for

__all__ = ["CommitResult", "Pipeline"]

logger = logging.getLogger("citylab.ingest")

_KIND_NAMES = np.asarray(ANOMALY_KINDS, dtype=object)


@dataclass(frozen=True, slots=True)
class CommitResult:
    packs_received: int
    packs_stored: int
    packs_duplicate: int
    packs_dead_lettered: int
    readings_stored: int
    anomalies: int
    # (org, device) -> the device's committed watermark after this commit
    watermarks: dict[tuple[str, str], Watermark] = field(default_factory=dict)
    dead_letters: tuple[DeadLetter, ...] = ()


class Pipeline:
    def __init__(self, database_url: str, *, widths_s: Sequence[int] = (60,)) -> None:
        self._url = database_url
        self._conn = connect(database_url, application_name="citylab-ingest")
        self._meta = connect(database_url, autocommit=True, application_name="citylab-ingest-registry")
        self.writer = TimeSeriesWriter(capabilities(self._conn))
        self._conn.rollback()  # capabilities() opened a transaction
        self.processor = StreamProcessor(widths_s=tuple(widths_s))
        self.resolver = SeriesResolver(self._meta, on_new_series=self._set_bounds)
        rows = series_quantities(self._meta)
        self._set_bounds([r[0] for r in rows], [r[1] for r in rows])
        # The stream result of a batch whose transaction failed, reused when it is retried,
        # so that a retry does not feed the same readings to the detectors twice.
        self._retry: tuple[int, bytes, BatchResult] | None = None

    def close(self) -> None:
        for conn in (self._conn, self._meta):
            if not conn.closed:
                conn.close()

    def apply_retention(self, policy: RetentionPolicy) -> list[str]:
        """Plain PostgreSQL: drop expired partitions (TimescaleDB runs its own policies)."""
        if not self.writer.partitioned:
            return []
        with map_errors("retention"):
            dropped = drop_expired_partitions(self._meta, policy)
        if dropped:
            self.writer.rolled_back()  # forget the dropped days
        return dropped

    def reconnect(self) -> None:
        """New connections after the database went away (raises DatabaseUnavailable while it is away)."""
        self.close()
        self._conn = connect(self._url, application_name="citylab-ingest")
        self._meta = connect(self._url, autocommit=True, application_name="citylab-ingest-registry")
        self.resolver.rebind(self._meta)

    def _set_bounds(self, ids: list[int], quantities: list[str]) -> None:
        """Physical bounds and detector hyper-parameters (stream.params_for) of new series."""
        if not ids:
            return
        known = [QUANTITIES.get(q) for q in quantities]
        low = np.array([k.low if k else -np.inf for k in known], dtype=np.float64)
        high = np.array([k.high if k else np.inf for k in known], dtype=np.float64)
        sid = np.array(ids, dtype=np.int32)
        self.processor.set_bounds(sid, low, high)
        by_params: dict[object, list[int]] = {}
        for i, q in enumerate(quantities):
            by_params.setdefault(params_for(q), []).append(i)
        for params, rows in by_params.items():
            self.processor.set_params(sid[rows], params)

    def commit(self, messages: Sequence[Message]) -> CommitResult:
        """Store the batch; raises StorageError (DatabaseUnavailable: retry later) and stores nothing then."""
        try:
            with map_errors("commit batch"):
                return self._commit(messages)
        except Exception:
            self.writer.rolled_back()
            raise

    def _commit(self, messages: Sequence[Message]) -> CommitResult:
        self.resolver.refresh()
        dead: list[DeadLetter] = []
        packs: list[tuple[DecodedPack, np.ndarray]] = []
        for message in messages:
            decoded = decode_message(message, lorawan=self.resolver.lorawan_device)
            if isinstance(decoded, DeadLetter):
                dead.append(decoded)
                continue
            ids = self.resolver.resolve(decoded)
            if isinstance(ids, DeadLetter):
                dead.append(ids)
            else:
                packs.append((decoded, ids))

        conn = self._conn
        with conn.transaction():
            sequenced = [i for i, (p, _) in enumerate(packs) if p.seq is not None]
            claimed = claim_packs(conn, [
                PackKey(packs[i][0].org, packs[i][0].device, packs[i][0].boot_id, packs[i][0].seq, len(packs[i][0]))
                for i in sequenced
            ])
            fresh = np.ones(len(packs), dtype=bool)
            fresh[sequenced] = claimed
            stored = [packs[i] for i in np.flatnonzero(fresh)]
            series_id, time_us, value = _columns(stored)
            result = self._process(id(messages), fresh, series_id, time_us, value)
            readings = self.writer.write_readings(conn, series_id, time_us, value)
            self.writer.merge_aggregates(conn, result.aggregates)
            anomalies = result.anomalies
            self.writer.insert_anomalies(
                conn, anomalies.series_id, anomalies.time, anomalies.value, anomalies.score,
                _KIND_NAMES[anomalies.kind],
            )
            insert_dead_letters(conn, dead)
            # Duplicates count too: the edge may still hold a redelivered pack of an earlier
            # boot, and only a watermark naming that boot lets it prune the pack.
            marks: dict[tuple[str, str, str], int] = {}
            for pack, _ in packs:
                if pack.seq is not None and not pack.bridged:
                    key = (pack.org, pack.device, pack.boot_id)
                    marks[key] = max(marks.get(key, -1), pack.seq)
            committed = raise_watermarks(conn, marks)
            duplicates = len(packs) - len(stored)
            add_counters(conn, {
                "packs_received": len(messages) - duplicates,
                "packs_stored": len(stored),
                "packs_dead_lettered": len(dead),
                "packs_duplicate": duplicates,
                "readings_stored": readings,
            })
            add_org_counters(conn, stored=[(p.org, len(p)) for p, _ in stored], dead=dead,
                             duplicate=[packs[i][0].org for i in np.flatnonzero(~fresh)])
        self._retry = None
        return CommitResult(
            packs_received=len(messages), packs_stored=len(stored), packs_duplicate=duplicates,
            packs_dead_lettered=len(dead), readings_stored=readings, anomalies=len(anomalies),
            watermarks={(o, d): Watermark(boot_id=b, seq=s) for (o, d, b), s in committed.items()},
            dead_letters=tuple(dead),
        )

    def _process(self, batch: int, fresh: np.ndarray, series_id, time_us, value) -> BatchResult:
        key = fresh.tobytes()
        if self._retry is not None and self._retry[0] == batch and self._retry[1] == key:
            return self._retry[2]
        result = self.processor.process(series_id, time_us, value)
        self._retry = (batch, key, result)
        return result


def _columns(packs: list[tuple[DecodedPack, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not packs:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return (
        np.concatenate([ids for _, ids in packs]),
        np.concatenate([p.time_us for p, _ in packs]),
        np.concatenate([p.value for p, _ in packs]),
    )
