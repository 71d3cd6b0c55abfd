"""Alert rules in ingest: the organisations' rules (storage.alarm_rules) evaluated on every
batch and on a timer, their episodes turned into alarms (storage.alarms,
storage.alarm_conditions) in the transaction of the batch (or of the timer's tick), so that an
alarm commits with the readings that opened it, or not at all.

* **threshold**: one slot of the stream's ``ThresholdRules`` per (rule, series in its scope);
  its open and clear events become alarms (``apply``), and the readings that keep an open
  episode up (beyond ``off``) are counted into its alarm.
* **anomaly**: the batch's flags of the rule's kinds scoring at least ``min_score`` open one
  alarm per (rule, series), or count into the open one; the tick clears those quiet for
  ``clear_s`` seconds.
* **silence**: on the tick, ``StreamProcessor.check_gaps`` with the rule's ``intervals`` as the
  factor lists the series whose next reading is that many expected (learned) intervals
  overdue, so a dead sensor raises its alarm without a late reading; the series' next committed
  reading clears it. A worker of several on a shared subscription sees only its share of a
  series, so it also asks the database: the series' newest stored reading must be that many
  stored intervals old (``ingest.context_flags``).
* **device**: on the tick, the newest gateway status (storage ``gateway_status``): ``offline``
  for ``hold_s`` seconds, or a ``buffer`` at or above ``on_value`` packs that grew over ``hold_s``
  seconds (cleared at ``off_value``).

Rules and their scopes are reloaded at most every ``refresh_s`` seconds; only new, changed and
removed (rule, series) pairs touch the processor, so an episode in progress is kept across
reloads. After a restart a condition that still holds opens its episode again in the stream;
the alarm is found already open and nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg

from ingest.context_flags import DEPTH, stored_cadence
from storage.alarm_conditions import (
    apply_anomalies,
    extend_alarms,
    clear_device_alarms,
    clear_quiet_anomalies,
    clear_silences,
    open_alarm_keys,
    open_device_alarms,
    open_silences,
)
from storage.alarm_rules import AlertRule, list_rules, rule_devices, rule_series
from storage.preceding import NO_READING, preceding_readings
from storage.alarms import Episode, apply_episodes
from stream import ANOMALY_KINDS, BatchResult, StreamProcessor

__all__ = ["RuleHook"]

_NO_SERIES = np.zeros(0, np.int32)


@dataclass(frozen=True, slots=True, eq=False)
class _AnomalyRule:
    id: int
    series: np.ndarray   # int32, sorted
    kinds: np.ndarray    # bool per ANOMALY_KINDS code
    min_score: float


class RuleHook:
    def __init__(self, meta: Callable[[], psycopg.Connection], processor: StreamProcessor, *,
                 refresh_s: float = 5.0, shared: bool = False) -> None:
        self._meta = meta  # the pipeline's current autocommit registry connection (it reconnects)
        self._processor = processor
        self._shared = shared  # a worker of several: a silence is checked against the stored readings
        self._refresh_s = refresh_s
        self._at = -float("inf")
        self._slots: dict[tuple[int, int], int] = {}   # (rule, series) -> threshold slot in the processor
        self._specs: dict[int, tuple] = {}             # slot -> what it was added with
        self._slot_key: dict[int, tuple[int, int]] = {}
        self._next_slot = 1
        self._anomaly: list[_AnomalyRule] = []
        self._silence: dict[float, list[tuple[int, np.ndarray]]] = {}  # intervals -> (rule, its series)
        self._silent: set[tuple[int, int]] = set()     # (rule, series) with an open silence alarm
        self._silent_series = _NO_SERIES
        self._device: dict[int, AlertRule] = {}
        self._pending: dict[tuple[int, str, str], tuple[datetime, int]] = {}  # buffer rules: since, depth then

    def stale(self) -> None:
        """New series exist: reload the rules and their scopes at the next ``refresh``."""
        self._at = -float("inf")

    def refresh(self, *, force: bool = False) -> None:
        """Load the enabled rules of every organisation and their scopes, when due."""
        now = time.monotonic()
        if not force and now - self._at < self._refresh_s:
            return
        self._at = now
        meta = self._meta()
        rules = {r.id: r for r in list_rules(meta)}
        scopes: dict[int, list[int]] = {}
        for rule_id, series_id in rule_series(meta):
            scopes.setdefault(rule_id, []).append(series_id)
        series = {k: np.asarray(v, np.int32) for k, v in scopes.items()}
        self._load_thresholds(rules, scopes)
        self._anomaly = [
            _AnomalyRule(r.id, series.get(r.id, _NO_SERIES),
                         np.array([r.anomaly_kinds is None or k in r.anomaly_kinds for k in ANOMALY_KINDS]),
                         float(r.min_score or 0.0))
            for r in rules.values() if r.kind == "anomaly"]
        self._silence = {}
        for r in rules.values():
            if r.kind == "silence":
                self._silence.setdefault(float(r.intervals), []).append((r.id, series.get(r.id, _NO_SERIES)))
        self._device = {r.id: r for r in rules.values() if r.kind == "device"}
        self._set_silent({(k[0], k[1]) for k in open_alarm_keys(meta, "silence")})

    def silence_series(self) -> np.ndarray:
        """The series some silence rule watches (int32, unique)."""
        watched = [series for rules in self._silence.values() for _, series in rules]
        return np.unique(np.concatenate(watched)) if watched else _NO_SERIES

    def _load_thresholds(self, rules: dict[int, AlertRule], scopes: dict[int, list[int]]) -> None:
        wanted = {(r.id, s): (s, r.on_value, r.off_value, r.hold_s, r.above)
                  for r in rules.values() if r.kind == "threshold" for s in scopes.get(r.id, ())}
        gone = [slot for key, slot in self._slots.items() if key not in wanted]
        if gone:
            self._processor.rules.remove(gone)
            for slot in gone:
                del self._slots[self._slot_key.pop(slot)]
                del self._specs[slot]
        changed: dict[bool, list[tuple[int, tuple]]] = {}
        for key, spec in wanted.items():
            slot = self._slots.get(key)
            if slot is None:
                slot, self._next_slot = self._next_slot, self._next_slot + 1
                self._slots[key], self._slot_key[slot] = slot, key
            if self._specs.get(slot) != spec:
                self._specs[slot] = spec
                changed.setdefault(spec[4], []).append((slot, spec))
        for above, items in changed.items():
            slots = np.array([s for s, _ in items], np.int64)
            sid, on, off, hold = (np.array([spec[i] for _, spec in items]) for i in range(4))
            self._processor.rules.add(slots, sid.astype(np.int32), on=on, off=off, hold_s=hold, above=above)
        if changed:   # a rule slot starts with the episode its alarm says (open after a restart: it clears)
            open_keys = {(k[0], k[1]) for k in open_alarm_keys(self._meta(), "threshold")}
            self._processor.rules.resume([slot for items in changed.values() for slot, _ in items
                                          if self._slot_key[slot] in open_keys])

    def _set_silent(self, pairs: set[tuple[int, int]]) -> None:
        self._silent = pairs
        self._silent_series = np.unique(np.fromiter((s for _, s in pairs), np.int32, len(pairs)))

    def apply(self, conn: psycopg.Connection, result: BatchResult, series_id: np.ndarray, time_us: np.ndarray,
              value: np.ndarray) -> None:
        """The batch's episodes as alarms, in the caller's (the batch's) transaction; the committed
        readings (`series_id`, `time_us`, `value`) end the silences of their series."""
        events = result.rule_events
        if len(events):
            keys = [self._slot_key.get(slot) for slot in events.rule_id.tolist()]
            apply_episodes(conn, (Episode(k[0], t, v, o, k[1]) for k, t, v, o in zip(
                keys, events.time.tolist(), events.value.tolist(), events.opened.tolist()) if k is not None))
        if series_id.size and len(self._processor.rules):
            self._extend_thresholds(conn, result, series_id, time_us, value)
        if len(result.anomalies) and self._anomaly:
            self._apply_anomalies(conn, result)
        if self._silent_series.size and series_id.size:
            self._end_silences(conn, series_id, time_us, value)

    def _extend_thresholds(self, conn: psycopg.Connection, result: BatchResult, series_id: np.ndarray,
                           time_us: np.ndarray, value: np.ndarray) -> None:
        """Count the batch's readings beyond ``off`` inside an episode (after its open event, before
        its clear event) into the alarm of that episode."""
        events = result.rule_events
        active = set(self._processor.rules.active().tolist())  # slots open after this batch
        slots = sorted((active | set(events.rule_id.tolist())) & self._specs.keys())
        if not slots:
            return
        specs = [self._specs[k] for k in slots]
        sel = np.isin(series_id, np.array([spec[0] for spec in specs], np.int32))
        if not sel.any():
            return
        sid, t, v = series_id[sel], time_us[sel], value[sel]
        cols: dict[str, list] = {"rule_id": [], "series_id": [], "last_us": [], "last_value": [], "hits": []}
        for slot, (s, _, off, _, above) in zip(slots, specs):
            mine = events.rule_id == slot  # this slot's events, in time order
            e_time, e_open = events.time[mine], events.opened[mine]
            m = (sid == s) & ((v > off) if above else (v < off))
            if not m.any():
                continue
            rt, rv = t[m], v[m]
            last = np.searchsorted(e_time, rt, side="right") - 1  # the newest event at or before each reading
            before = (slot in active) != bool(e_time.size % 2)  # open before the batch (events alternate)
            if e_time.size:
                at = np.maximum(last, 0)
                inside = np.where(last >= 0, e_open[at] & (rt > e_time[at]), before)
            else:
                inside = np.full(rt.size, before)
            for episode in np.unique(last[inside]):  # the readings of each episode the batch touched
                k = inside & (last == episode)
                newest = int(np.argmax(np.where(k, rt, np.iinfo(np.int64).min)))
                cols["rule_id"].append(self._slot_key[slot][0])
                cols["series_id"].append(s)
                cols["last_us"].append(int(rt[newest]))
                cols["last_value"].append(float(rv[newest]))
                cols["hits"].append(int(k.sum()))
        extend_alarms(conn, **cols)

    def _apply_anomalies(self, conn: psycopg.Connection, result: BatchResult) -> None:
        a = result.anomalies  # sorted by (series, time)
        cols: dict[str, list] = {n: [] for n in ("rule_id", "series_id", "first_us", "value", "score", "kind",
                                                 "last_us", "peak", "hits")}
        for rule in self._anomaly:
            m = np.isin(a.series_id, rule.series) & rule.kinds[a.kind] & (a.score >= rule.min_score)
            if not m.any():
                continue
            sid, score = a.series_id[m], a.score[m]
            series, first, hits = np.unique(sid, return_index=True, return_counts=True)
            cols["rule_id"] += [rule.id] * series.size
            cols["series_id"] += series.tolist()
            cols["first_us"] += a.time[m][first].tolist()
            cols["value"] += a.value[m][first].tolist()
            cols["score"] += score[first].tolist()
            cols["kind"] += [ANOMALY_KINDS[k] for k in a.kind[m][first].tolist()]
            cols["last_us"] += a.time[m][first + hits - 1].tolist()
            cols["peak"] += np.maximum.reduceat(score, first).tolist()
            cols["hits"] += hits.tolist()
        apply_anomalies(conn, **cols)

    def _end_silences(self, conn: psycopg.Connection, series_id: np.ndarray, time_us: np.ndarray,
                      value: np.ndarray) -> None:
        sel = np.isin(series_id, self._silent_series)
        if not sel.any():
            return
        sid, t, v = series_id[sel], time_us[sel], value[sel]
        order = np.lexsort((t, sid))
        series, first = np.unique(sid[order], return_index=True)  # each series' earliest reading
        clear_silences(conn, series_id=series, time_us=t[order][first], value=v[order][first])
        ended = set(series.tolist())
        self._set_silent({p for p in self._silent if p[1] not in ended})

    def tick(self, conn: psycopg.Connection, now_us: int) -> None:
        """The timer's turn, in the caller's transaction: open silences, clear quiet anomalies,
        open and clear device alarms."""
        self._open_silences(conn, now_us)
        clear_quiet_anomalies(conn)
        if self._device:
            self._check_devices(conn, datetime.fromtimestamp(now_us / 1e6, timezone.utc))

    def _open_silences(self, conn: psycopg.Connection, now_us: int) -> None:
        cols: dict[str, list[int]] = {"rule_id": [], "series_id": [], "since_us": []}
        for intervals, rules in self._silence.items():
            ids, overdue = self._processor.check_gaps(now_us, factor=intervals)
            if self._shared and ids.size:
                ids, overdue = _stored_overdue(conn, ids, now_us, intervals)
            if not ids.size:
                continue
            for rule_id, series in rules:
                m = np.isin(ids, series)
                for sid, late in zip(ids[m].tolist(), overdue[m].tolist()):
                    if (rule_id, sid) not in self._silent:
                        cols["rule_id"].append(rule_id)
                        cols["series_id"].append(sid)
                        cols["since_us"].append(now_us - late)
        open_silences(conn, now_us=now_us, **cols)
        if cols["rule_id"]:  # those found open already (e.g. before a restart) are silent too
            self._set_silent(self._silent | set(zip(cols["rule_id"], cols["series_id"])))

    def _check_devices(self, conn: psycopg.Connection, now: datetime) -> None:
        open_keys = {(k[0], k[2], k[3]) for k in open_alarm_keys(conn, "device")}
        opens: list[tuple[int, str, str, int, float | None, dict]] = []
        clears: list[tuple[int, str, str, float | None]] = []
        seen: set[tuple[int, str, str]] = set()
        for s in rule_devices(self._meta()):
            rule = self._device.get(s.rule_id)
            if rule is None:
                continue
            key = (s.rule_id, s.device_org, s.device)
            seen.add(key)
            depth = s.buffer_depth
            hold = timedelta(seconds=rule.hold_s)
            if rule.condition == "offline":
                down = s.state is not None and s.state != "online"
                if key in open_keys and not down:
                    clears.append((*key, None))
                elif key not in open_keys and down and s.received_at <= now - hold:
                    opens.append((*key, _us(s.received_at), None, {"state": s.state}))
                continue
            if key in open_keys:
                if depth is None or depth <= rule.off_value:
                    clears.append((*key, depth))
                continue
            if depth is None or depth < rule.on_value:
                self._pending.pop(key, None)
                continue
            since, then = self._pending.setdefault(key, (now, depth))
            if now - since >= hold and (rule.hold_s == 0 or depth > then):
                opens.append((*key, _us(since), float(depth), {"buffer_depth": depth, "buffer_depth_before": then}))
                self._pending.pop(key, None)
            elif now - since >= hold:
                self._pending[key] = (now, depth)  # not growing: look at the next window
        for key in [k for k in self._pending if k not in seen]:
            del self._pending[key]
        clears += [(*k, None) for k in open_keys - seen]  # no longer in scope (or readable)
        clear_device_alarms(conn, clears)
        open_device_alarms(conn, opens)


def _stored_overdue(conn: psycopg.Connection, ids: np.ndarray, now_us: int,
                    intervals: float) -> tuple[np.ndarray, np.ndarray]:
    """Of the series this worker finds overdue, those whose newest stored reading (of any worker)
    is `intervals` stored intervals (the median of the last ones) older than `now_us`, and by how much."""
    last, expected = stored_cadence(preceding_readings(conn, ids, np.full(ids.size, now_us, np.int64),
                                                       depth=DEPTH)[0])
    with np.errstate(invalid="ignore"):
        limit = last + intervals * expected
        due = (last != NO_READING) & np.isfinite(limit) & (now_us > limit)
    return ids[due], (now_us - limit[due]).astype(np.int64)


def _us(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1, tzinfo=timezone.utc)) / timedelta(microseconds=1))
