"""One batch of messages through decode → validate → registry → stream → storage, in one transaction.

The batch is the unit of commitment: its readings, aggregate partials, anomalies,
dead letters, pack claims, watermarks and counters commit together or not at
all. Only after a piece of it has committed may the caller acknowledge its messages.

Nothing one message holds can stop the others. Every field is validated before SQL
(`ingest.validate`); a message that still makes the database refuse the batch is
found by splitting the batch (`Pipeline.commit_pieces`) and dead-lettered with the
SQLSTATE, and the rest is stored. Only a lost connection (and a server out of
resources or shutting down: SQLSTATE classes 08, 53, 57) is retried. When a batch is
split, its stored halves pass through the anomaly detectors again: rows and
aggregates stay exact, the detectors' learned state sees those readings twice.

A pipeline of one of several workers on a shared subscription (`shared=True`) sees a
share of each device's packs: the flags that depend on a reading's past are checked
against what all workers stored before they are kept (`ingest.context_flags`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import psycopg

from ingest.context_flags import ContextCheck
from ingest.decode import DecodedPack, dead_letter, decode_message
from ingest.message import Message
from ingest.registry import SeriesResolver
from ingest.rules import RuleHook
from ingest.validate import PackLimits, PackValidator, batch_days
from protocol.quantities import QUANTITIES
from protocol.topics import Watermark, seq_ranges
from storage.db import capabilities, connect
from storage.errors import DatabaseUnavailable, StorageError, map_errors
from storage.packs import (
    DeadLetter,
    PackKey,
    add_counters,
    add_org_counters,
    advance_watermarks,
    claim_packs,
    insert_dead_letters,
)
from storage.gdpr import apply_series_retention, erased_ranges, erased_readings
from storage.ngsild.changes import record_device_changes
from storage.preceding import latest_readings
from storage.registry import series_quantities
from storage.retention import RetentionPolicy, drop_expired_partitions
from storage.typed import insert_typed_readings
from storage.timeseries import TimeSeriesWriter
from stream import ANOMALY_KINDS, BatchResult, StreamProcessor, params_for

__all__ = ["CommitResult", "Pipeline"]

logger = logging.getLogger("citylab.ingest")

_KIND_NAMES = np.asarray(ANOMALY_KINDS, dtype=object)
_COUNTS = ("packs_received", "packs_stored", "packs_duplicate", "packs_dead_lettered", "readings_stored", "anomalies")


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

    @classmethod
    def merged(cls, results: Sequence[CommitResult]) -> CommitResult:
        """One result for several pieces of a batch (a later watermark supersedes an earlier one)."""
        watermarks: dict[tuple[str, str], Watermark] = {}
        for r in results:
            watermarks.update(r.watermarks)
        return cls(*(sum(getattr(r, name) for r in results) for name in _COUNTS), watermarks=watermarks,
                   dead_letters=tuple(d for r in results for d in r.dead_letters))


PRIME_SERIES_PER_READ = 500   # series whose newest readings one statement of _prime reads


class Pipeline:
    def __init__(self, database_url: str, *, widths_s: Sequence[int] = (60,), limits: PackLimits = PackLimits(),
                 on_commit: Callable[[np.ndarray, np.ndarray, np.ndarray], None] | None = None,
                 shared: bool = False) -> None:
        """`shared`: this worker is one of several on a shared subscription, and sees a share of
        each device's packs: flags that depend on a reading's past are checked against the database
        (ingest.context_flags)."""
        self._url = database_url
        self.on_commit = on_commit   # called with (series_id, time_us, value) of each committed piece
        self.validator = PackValidator(limits)
        self._conn = connect(database_url, application_name="citylab-ingest")
        self._meta = connect(database_url, autocommit=True, application_name="citylab-ingest-registry")
        self.writer = TimeSeriesWriter(capabilities(self._conn))
        self._conn.rollback()  # capabilities() opened a transaction
        self.processor = StreamProcessor(widths_s=tuple(widths_s))
        self._primed = np.zeros(0, bool)   # by series id: its stream state is this pipeline's (_prime)
        self.resolver = SeriesResolver(self._meta, on_new_series=self._set_bounds)
        rows = series_quantities(self._meta)
        self._set_bounds([r[0] for r in rows], [r[1] for r in rows])
        self.rules = RuleHook(lambda: self._meta, self.processor, shared=shared)  # alert rules (ingest/rules.py)
        self._context = ContextCheck(self.processor) if shared else None
        # The stream result of a batch whose transaction failed, reused when it is retried,
        # so that a retry does not feed the same readings to the detectors twice.
        self._retry: tuple[tuple[tuple[Message, ...], bytes], BatchResult] | None = None

    def close(self) -> None:
        for conn in (self._conn, self._meta):
            if not conn.closed:
                conn.close()

    def apply_retention(self, policy: RetentionPolicy) -> list[str]:
        """Per-series and per-product retention (both engines, storage.gdpr); then on plain
        PostgreSQL drop expired partitions (TimescaleDB runs its own policies)."""
        with map_errors("series retention"):
            apply_series_retention(self._meta)
        if not self.writer.partitioned:
            return []
        with map_errors("retention"):
            dropped = drop_expired_partitions(self._meta, policy)
        if dropped:
            self.writer.rolled_back()  # forget the dropped days
        return dropped

    def check_alarms(self, now_us: int | None = None) -> None:
        """The alert rules' timer (ingest/rules.py): silences, quiet anomalies, device status, in
        one transaction; raises DatabaseUnavailable when the database is away."""
        self.rules.refresh()
        with map_errors("check alarms"), self._conn.transaction():
            self._prime(self._conn, self.rules.silence_series())   # a sensor dead since before a restart
            self.rules.tick(self._conn, int(time.time() * 1_000_000) if now_us is None else now_us)

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
        if hasattr(self, "rules"):
            self.rules.stale()  # rules scoped to a device, quantity or product may watch them
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
        """Store the batch, isolating packs the database refuses; raises DatabaseUnavailable (retry later).

        The merged result of `commit_pieces`: when it raises, some pieces may have committed.
        """
        return CommitResult.merged([result for _, result in self.commit_pieces(messages)])

    def commit_pieces(self, messages: Sequence[Message]) -> Iterator[tuple[int, CommitResult]]:
        """Commit `messages` in as few transactions as the database allows, in order.

        Yields (end, result) after each committed piece `messages[start:end]`, so the
        caller may acknowledge those messages at once. A piece the database refuses
        for its data (any error but a lost connection, resource shortage or operator
        intervention) is split in halves; a single refused message becomes the dead
        letter `database_refused` with the SQLSTATE and the server's message. Raises
        DatabaseUnavailable, after which the remaining messages are to be retried.
        """
        pending = [(0, len(messages))]
        while pending:
            start, end = pending.pop()
            piece = messages[start:end]
            try:
                result = self._commit_piece(piece)
            except DatabaseUnavailable:
                raise
            except _TooManyDays as exc:
                middle = (start + end) // 2
                logger.info("%d messages span %d days: committing them in two pieces", end - start, exc.days)
                pending += [(middle, end), (start, middle)]
                continue
            except Exception as exc:  # a data error, or a bug met by these messages only
                if end - start > 1:
                    middle = (start + end) // 2
                    logger.warning("%d messages refused (%s); splitting them to find the culprit",
                                   end - start, _describe(exc))
                    pending += [(middle, end), (start, middle)]
                    continue
                result = self._refuse(piece[0], exc)
            yield end, result

    def _commit_piece(self, messages: Sequence[Message]) -> CommitResult:
        try:
            with map_errors("commit batch"):
                return self._commit(messages)
        except Exception:
            self.writer.rolled_back()
            try:
                self._conn.rollback()
            except psycopg.Error:
                pass
            raise

    def _refuse(self, message: Message, exc: BaseException) -> CommitResult:
        """Dead-letter one message the database refused, in a transaction of its own.

        When the pack's identity can be read it is claimed too (0 readings), so that a
        redelivery is a duplicate and the watermark can pass it; when even the claim is
        refused, the dead letter alone is written.
        """
        sqlstate = getattr(exc, "sqlstate", None)
        reason, detail = (("database_refused", f"SQLSTATE {sqlstate}: {exc}") if sqlstate
                          else ("internal_error", f"{type(exc).__name__}: {exc}"))
        identity = self._identity(message)
        letter = dead_letter(message, reason, detail,
                             identity.device if identity else _topic_part(message.topic, 2),
                             org=identity.org if identity else None)
        logger.error("message on %s dead-lettered: %s", message.topic, detail)
        while True:
            try:
                with map_errors("dead-letter a refused message"), self._conn.transaction():
                    duplicate = identity is not None and not claim_packs(self._conn, [identity])[0]
                    if not duplicate:
                        insert_dead_letters(self._conn, [letter])
                    add_counters(self._conn, {"packs_received": int(not duplicate),
                                              "packs_dead_lettered": int(not duplicate),
                                              "packs_duplicate": int(duplicate)})
                    add_org_counters(self._conn, stored=[], dead=[] if duplicate else [letter],
                                     duplicate=[identity.org] if duplicate else [])
                    watermarks = {}
                    if identity is not None:
                        key = (identity.org, identity.device, identity.boot_id)
                        prefix = advance_watermarks(self._conn, [key])
                        watermarks[(identity.org, identity.device)] = _watermark(
                            identity.boot_id, prefix.get(key, -1), [identity.seq])
                break
            except DatabaseUnavailable:
                raise
            except StorageError as claim_exc:
                if identity is None:
                    raise
                logger.warning("cannot claim the refused pack's identity, dead-lettering it alone: %s", claim_exc)
                identity = None
        return CommitResult(packs_received=1, packs_stored=0, packs_duplicate=int(duplicate),
                            packs_dead_lettered=int(not duplicate), readings_stored=0, anomalies=0,
                            watermarks=watermarks, dead_letters=() if duplicate else (letter,))

    def _identity(self, message: Message) -> PackKey | None:
        """The claim (0 readings) of the pack when its identity can be read, else None."""
        try:
            decoded = decode_message(message)
        except Exception:
            return None
        if isinstance(decoded, DeadLetter) or decoded.seq is None or decoded.bridged:
            return None
        return PackKey(decoded.org, decoded.device, decoded.boot_id, decoded.seq, 0)

    def _prepare(self, messages: Sequence[Message]) -> list[tuple[DecodedPack, np.ndarray] | DeadLetter]:
        """Decode, validate and authorise each message; StorageError (registry access) propagates."""
        decoded: list[DecodedPack | DeadLetter] = [self._decode(m) for m in messages]
        packs = [d for d in decoded if not isinstance(d, DeadLetter)]
        verdicts = iter(self.validator.check(packs))
        erased = erased_ranges(self._meta) if packs else {}
        out: list[tuple[DecodedPack, np.ndarray] | DeadLetter] = []
        for item in decoded:
            if isinstance(item, DeadLetter):
                out.append(item)
                continue
            refused = next(verdicts)
            if refused is not None:
                out.append(refused)
                continue
            try:
                ids = self.resolver.resolve(item)
            except StorageError:
                raise
            except Exception as exc:  # a bug must not stop ingest: the pack is kept as a dead letter
                logger.exception("authorising the message on %s failed", item.message.topic)
                out.append(dead_letter(item.message, "internal_error", f"{type(exc).__name__}: {exc}", item.device))
                continue
            if isinstance(ids, DeadLetter):
                out.append(ids if item.bridged else replace(ids, boot_id=item.boot_id, seq=item.seq))
            elif erased and (hits := _erased_hits(erased, *ids)):
                # an erased range refuses re-entry (storage.gdpr.erase)
                letter = dead_letter(item.message, "erased", f"{hits} readings fall in an erased range", item.device,
                                     org=item.org)
                out.append(letter if item.bridged else replace(letter, boot_id=item.boot_id, seq=item.seq))
            else:
                out.append(ids)  # the pack in its series' units, and its series ids
        return out

    def _decode_once(self, message: Message) -> DecodedPack | DeadLetter:
        return decode_message(message, lorawan=self.resolver.lorawan_device,
                              senml_names=self.resolver.senml_names,
                              integration=self.resolver.integration, datastream=self.resolver.datastream)

    def _decode(self, message: Message) -> DecodedPack | DeadLetter:
        try:
            decoded = self._decode_once(message)
            if isinstance(decoded, DeadLetter) and decoded.reason == "unmapped_name" and decoded.device \
                    and self.resolver.reread_senml_names(decoded.org, decoded.device):
                # names declared a moment ago, not yet in the registry cache
                decoded = self._decode_once(message)
            return decoded
        except StorageError:
            raise
        except Exception as exc:  # a decoder bug must not stop ingest: the pack is kept as a dead letter
            logger.exception("decoding the message on %s failed", message.topic)
            return dead_letter(message, "internal_error", f"{type(exc).__name__}: {exc}")

    def _commit(self, messages: Sequence[Message]) -> CommitResult:
        self.resolver.refresh()
        self.rules.refresh()
        dead: list[DeadLetter] = []
        packs: list[tuple[DecodedPack, np.ndarray]] = []
        for prepared in self._prepare(messages):
            if isinstance(prepared, DeadLetter):
                dead.append(prepared)
            else:
                packs.append(prepared)
        self.rules.refresh()  # at once when the batch made new series
        time_all = np.concatenate([p.time_us for p, _ in packs]) if packs else np.zeros(0, np.int64)
        days = batch_days(time_all)
        if days > self.validator.limits.max_days_per_batch and len(messages) > 1:
            raise _TooManyDays(days)
        if self.writer.partitioned and packs:
            with map_errors("create partitions"):
                self.writer.partitions.ensure_ahead(self._meta, "readings", time_all)
                self.writer.partitions.ensure_ahead(self._meta, "anomalies", time_all)
                self.writer.partitions.ensure_ahead(self._meta, "aggregates", np.concatenate([
                    time_all // (w * 1_000_000) * (w * 1_000_000) for w in self.processor.widths_s]))

        conn = self._conn
        with conn.transaction():
            sequenced = [i for i, (p, _) in enumerate(packs) if p.seq is not None]
            identified = [d for d in dead if d.seq is not None and d.device is not None and d.org is not None]
            claimed = claim_packs(conn, [
                PackKey(packs[i][0].org, packs[i][0].device, packs[i][0].boot_id, packs[i][0].seq,
                        packs[i][0].stored_count)
                for i in sequenced
            ] + [PackKey(d.org, d.device, d.boot_id, d.seq, 0) for d in identified])
            fresh = np.ones(len(packs), dtype=bool)
            fresh[sequenced] = claimed[:len(sequenced)]
            # a dead letter already accounted for (a redelivery) is not written twice
            repeated = {id(d) for d, ok in zip(identified, claimed[len(sequenced):]) if not ok}
            letters = [d for d in dead if id(d) not in repeated]
            stored = [packs[i] for i in np.flatnonzero(fresh)]
            series_id, time_us, value = _columns(stored)
            result = self._process(conn, messages, fresh, series_id, time_us, value)
            readings = self.writer.write_readings(conn, series_id, time_us, value)
            readings += _write_typed(conn, stored)
            if stored:   # the outbox of NGSI-LD subscriptions: notified after this commit
                record_device_changes(conn, np.concatenate([ids for _, ids in stored]))
            self.writer.merge_aggregates(conn, result.aggregates)
            insert_dead_letters(conn, letters)
            # Duplicates count too: the edge may still hold a redelivered pack of an earlier
            # boot, and only a watermark naming that boot lets it prune the pack.
            seqs: dict[tuple[str, str, str], list[int]] = {}
            for pack, _ in packs:
                if pack.seq is not None and not pack.bridged:
                    seqs.setdefault((pack.org, pack.device, pack.boot_id), []).append(pack.seq)
            for letter in identified:
                seqs.setdefault((letter.org, letter.device, letter.boot_id), []).append(letter.seq)
            # the watermark locks come before the flags: a shared worker's context check then sees
            # the packs of its devices committed before it
            prefixes = advance_watermarks(conn, list(seqs))
            if self._context is not None and len(result.anomalies):
                result = replace(result, anomalies=self._context.verify(
                    conn, result.anomalies, series_id, time_us, _unsettled(stored, prefixes)))
            anomalies = result.anomalies
            self.writer.insert_anomalies(
                conn, anomalies.series_id, anomalies.time, anomalies.value, anomalies.score,
                _KIND_NAMES[anomalies.kind],
            )
            self.rules.apply(conn, result, series_id, time_us, value)
            duplicates = len(packs) - len(stored) + len(repeated)
            add_counters(conn, {
                "packs_received": len(messages) - duplicates,
                "packs_stored": len(stored),
                "packs_dead_lettered": len(letters),
                "packs_duplicate": duplicates,
                "readings_stored": readings,
            })
            add_org_counters(conn, stored=[(p.org, p.stored_count) for p, _ in stored], dead=letters,
                             duplicate=[packs[i][0].org for i in np.flatnonzero(~fresh)]
                             + [d.org for d in identified if id(d) in repeated])
        self._retry = None
        if self.on_commit is not None and len(series_id):
            self.on_commit(series_id, time_us, value)
        return CommitResult(
            packs_received=len(messages), packs_stored=len(stored), packs_duplicate=duplicates,
            packs_dead_lettered=len(letters), readings_stored=readings, anomalies=len(anomalies),
            watermarks={(o, d): _watermark(b, prefixes.get((o, d, b), -1), s) for (o, d, b), s in seqs.items()},
            dead_letters=tuple(letters),
        )

    def _process(self, conn: psycopg.Connection, messages: Sequence[Message], fresh: np.ndarray, series_id, time_us,
                 value) -> BatchResult:
        key = (tuple(messages), fresh.tobytes())  # holds the messages: their identities stay unique
        if self._retry is not None and _same(self._retry[0], key):
            return self._retry[1]
        self._prime(conn, series_id)
        result = self.processor.process(series_id, time_us, value)
        self._retry = (key, result)
        return result


    def _prime(self, conn: psycopg.Connection, series_id: np.ndarray) -> None:
        """Rebuild the stream state of the series this pipeline meets for the first time (after a
        restart, or a series new to this worker) from their newest stored readings: enough of them
        for the detector's warm-up and the expected interval, replayed through the processor in
        time order. What the replay scores, flags and aggregates was stored when those readings
        were committed, so it is dropped; the detector and the expected interval are what the next
        reading meets. The threshold rules start afresh, as before (a rule may be younger than the
        readings: replayed, it would open an episode no alarm was made for)."""
        ids = np.unique(np.asarray(series_id, np.int32))
        if ids.size == 0:
            return
        if ids[-1] >= self._primed.size:
            grown = np.zeros(max(int(ids[-1]) + 1, 2 * self._primed.size), bool)
            grown[:self._primed.size] = self._primed
            self._primed = grown
        new = ids[~self._primed[ids]]
        if new.size == 0:
            return
        depth = max(p.warmup + p.gap_warmup + 1 for p in {self.processor.params_of(int(s)) for s in new})
        for lo in range(0, new.size, PRIME_SERIES_PER_READ):   # bounded memory for a lab of many series
            part = new[lo:lo + PRIME_SERIES_PER_READ]
            sid, time_us, value = latest_readings(conn, part, depth=depth)
            self._primed[part] = True
            if sid.size:
                self.processor.process(sid, time_us, value, rules=False)


class _TooManyDays(Exception):
    """The piece's packs span more days than one transaction may touch: split it (no data error)."""

    def __init__(self, days: int) -> None:
        super().__init__(f"{days} days")
        self.days = days


def _same(a: tuple[tuple[Message, ...], bytes], b: tuple[tuple[Message, ...], bytes]) -> bool:
    return a[1] == b[1] and len(a[0]) == len(b[0]) and all(x is y for x, y in zip(a[0], b[0]))


def _watermark(boot_id: str, prefix: int, seqs: list[int]) -> Watermark:
    """The prefix, and the seqs of this commit above it as ranges (at most MAX_RANGES)."""
    return Watermark(boot_id=boot_id, seq=prefix, ranges=seq_ranges([s for s in seqs if s > prefix]))


def _topic_part(topic: str, level: int) -> str | None:
    """The org (level 1) or device (level 2) of a `lab/{org}/{device}/...` topic."""
    parts = topic.split("/")
    return parts[level] if len(parts) > 3 and parts[0] == "lab" else None


def _describe(exc: BaseException) -> str:
    sqlstate = getattr(exc, "sqlstate", None)
    return f"SQLSTATE {sqlstate}: {exc}" if sqlstate else f"{type(exc).__name__}: {exc}"


def _columns(packs: list[tuple[DecodedPack, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not packs:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return (
        np.concatenate([ids[:len(p)] for p, ids in packs]),
        np.concatenate([p.time_us for p, _ in packs]),
        np.concatenate([p.value for p, _ in packs]),
    )


def _unsettled(packs: list[tuple[DecodedPack, np.ndarray]], prefixes: dict[tuple[str, str, str], int]) -> np.ndarray:
    """Series ids of the packs whose device has an earlier pack of the same boot not yet committed."""
    ids = [ids[:len(p)] for p, ids in packs
           if p.seq is not None and not p.bridged and prefixes.get((p.org, p.device, p.boot_id), -1) < p.seq]
    return np.concatenate(ids) if ids else np.zeros(0, np.int32)


def _write_typed(conn: psycopg.Connection, packs: list[tuple[DecodedPack, np.ndarray]]) -> int:
    """The string, boolean and data readings of the stored packs (their ids follow the numeric ones)."""
    sids: list[int] = []
    times: list[int] = []
    values: list[str | bool | bytes] = []
    for pack, ids in packs:
        if pack.typed:
            sids += ids[len(pack):].tolist()
            times += [t.time_us for t in pack.typed]
            values += [t.value for t in pack.typed]
    return insert_typed_readings(conn, sids, times, values)


def _erased_hits(erased: dict[int, np.ndarray], pack: DecodedPack, ids: np.ndarray) -> int:
    """Readings of the pack, numeric and typed, that fall in an erased range (ids: numeric, then typed)."""
    time_us = pack.time_us
    if pack.typed:
        time_us = np.concatenate([time_us, np.fromiter((t.time_us for t in pack.typed), np.int64, len(pack.typed))])
    return int(erased_readings(erased, ids, time_us).sum())
