"""Threshold rules with hysteresis and a hold time: episodes, not readings.

A rule watches one series: it **opens** when the value has been beyond ``on`` (above it, or
below it for a ``below`` rule) at every reading for at least ``hold_s`` seconds, counted from
the first reading of that streak (``hold_s`` 0: at the first such reading), and **clears** at
the first later reading back beyond ``off`` (below ``off`` for an ``above`` rule; ``off`` ≤
``on``, the hysteresis that keeps a value hovering at the limit from opening and clearing at
every reading). One open and one clear event per episode, whatever the number of readings in it.

Rules are evaluated on the batch the detector has already sorted by (series, time), each
series' rules over its run while it is in cache. Late readings (older than the newest reading
a rule has seen) and non-finite values are ignored, so the events depend only on each series'
reading sequence, not on how it was cut into batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from stream._batch import as_series_ids, as_values
from stream._constants import MAX_WIDTH_S, NO_TIME, US_PER_S
from stream._errors import BatchError
from stream._order import SortedBatch

__all__ = ["RuleEvents", "ThresholdRules"]


@dataclass(frozen=True, slots=True, eq=False)
class RuleEvents:
    """Episode boundaries of one batch, by series, then rule, then time: ``opened`` True for an
    open, False for a clear; ``value`` is the reading that caused it."""

    rule_id: np.ndarray  # int64
    time: np.ndarray  # int64 UTC µs
    value: np.ndarray  # float64
    opened: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.rule_id.size)

    @classmethod
    def empty(cls) -> RuleEvents:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))


@njit(cache=True, nogil=True)
def evaluate_run(
    s, lo, hi, time, value, first, members, sign, on, off, hold,
    pending, active, last, o_rule, o_time, o_value, o_open, h,
):  # pragma: no cover - compiled
    """Walk series `s`'s run [lo, hi) of the sorted batch once per rule of the series; append
    events to o_* from position h; return the new number of events.

    Values are multiplied by ``sign`` (−1 for ``below`` rules), so every rule reads "above"."""
    if s + 1 >= first.size:
        return h  # no rule on this series (nor any larger id)
    for m in range(first[s], first[s + 1]):
        k = members[m]
        sg, lim_on, lim_off, hk = sign[k], on[k], off[k], hold[k]
        pk, ak, lk = pending[k], active[k], last[k]
        for j in range(lo, hi):
            t = time[j]
            x = value[j] * sg
            if t < lk or not np.isfinite(x):
                continue
            lk = t
            if ak:
                if x < lim_off:
                    ak = False
                    pk = NO_TIME
                    o_rule[h], o_time[h], o_value[h], o_open[h] = k, t, value[j], False
                    h += 1
            elif x > lim_on:
                if pk == NO_TIME:
                    pk = t
                if t - pk >= hk:
                    ak = True
                    o_rule[h], o_time[h], o_value[h], o_open[h] = k, t, value[j], True
                    h += 1
            else:
                pk = NO_TIME
        pending[k], active[k], last[k] = pk, ak, lk
    return h


@njit(cache=True, nogil=True)
def _evaluate(
    run_sid, run_bounds, time, value, first, members, sign, on, off, hold,
    pending, active, last, o_rule, o_time, o_value, o_open,
):  # pragma: no cover - compiled
    """``evaluate_run`` over every run; the number of events."""
    h = 0
    for r in range(run_sid.size):
        h = evaluate_run(run_sid[r], run_bounds[r], run_bounds[r + 1], time, value, first, members, sign, on, off,
                         hold, pending, active, last, o_rule, o_time, o_value, o_open, h)
    return h


class ThresholdRules:
    """The threshold rules of one processor and their episode state (struct-of-arrays, one slot
    per rule; rules are few per series)."""

    def __init__(self) -> None:
        self._ids = np.zeros(0, np.int64)
        self._sid = np.zeros(0, np.int32)
        self._sign = np.zeros(0, np.float64)
        self._on = np.zeros(0, np.float64)
        self._off = np.zeros(0, np.float64)
        self._hold = np.zeros(0, np.int64)
        self._pending = np.zeros(0, np.int64)
        self._active = np.zeros(0, bool)
        self._last = np.zeros(0, np.int64)
        self._first = np.zeros(1, np.int64)  # CSR over series ids: rules of s are members[first[s]:first[s+1]]
        self._members = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self._ids.size)

    def add(self, rule_id: Any, series_id: Any, *, on: Any, off: Any = None, hold_s: Any = 0.0,
            above: bool = True) -> None:
        """Watch series: open beyond `on` held for `hold_s` seconds, clear back beyond `off`
        (default `on`: no hysteresis). Arguments broadcast, so many rules are added at once;
        a rule id already present is replaced (its episode restarts)."""
        ids = np.atleast_1d(np.asarray(rule_id))
        if ids.dtype.kind not in "iu":
            raise BatchError(f"rule ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64)
        if np.unique(ids).size != ids.size:
            raise BatchError("rule ids must be unique")
        sid = as_series_ids(np.broadcast_to(np.atleast_1d(series_id), ids.shape))
        try:
            lim = [np.broadcast_to(as_values(np.atleast_1d(x), name), ids.shape)
                   for name, x in (("on", on), ("off", on if off is None else off), ("hold_s", hold_s))]
        except ValueError as exc:
            raise BatchError(f"rule arguments do not match {ids.size} rule ids: {exc}") from exc
        lim_on, lim_off, hold = lim
        if not (np.isfinite(lim_on).all() and np.isfinite(lim_off).all()):
            raise BatchError("rule on / off must be finite numbers")
        if (above and (lim_off > lim_on).any()) or (not above and (lim_off < lim_on).any()):
            raise BatchError(f"rule off must be {'<=' if above else '>='} on for {'an above' if above else 'a below'} rule")
        if not ((hold >= 0.0) & (hold < MAX_WIDTH_S)).all():
            raise BatchError(f"rule hold_s must be a duration in seconds in [0, {MAX_WIDTH_S})")
        self.remove(ids)
        sign = 1.0 if above else -1.0
        n = ids.size
        self._ids = np.concatenate([self._ids, ids])
        self._sid = np.concatenate([self._sid, sid])
        self._sign = np.concatenate([self._sign, np.full(n, sign)])
        self._on = np.concatenate([self._on, sign * lim_on])
        self._off = np.concatenate([self._off, sign * lim_off])
        self._hold = np.concatenate([self._hold, np.round(hold * US_PER_S).astype(np.int64)])
        self._pending = np.concatenate([self._pending, np.full(n, NO_TIME, np.int64)])
        self._active = np.concatenate([self._active, np.zeros(n, bool)])
        self._last = np.concatenate([self._last, np.full(n, NO_TIME, np.int64)])
        self._index()

    def remove(self, rule_ids) -> None:
        """Forget these rules (unknown ids are ignored)."""
        keep = ~np.isin(self._ids, np.asarray(rule_ids, np.int64))
        if keep.all():
            return
        for name in ("_ids", "_sid", "_sign", "_on", "_off", "_hold", "_pending", "_active", "_last"):
            setattr(self, name, getattr(self, name)[keep])
        self._index()

    def resume(self, rule_ids) -> None:
        """Take these rules' episodes as open (their alarms are, from before a restart): the next
        reading back beyond ``off`` clears them, one beyond ``on`` opens nothing. Unknown ids are
        ignored."""
        hit = np.isin(self._ids, np.asarray(rule_ids, np.int64))
        self._active[hit] = True
        self._pending[hit] = NO_TIME

    def active(self) -> np.ndarray:
        """Ids of the rules whose episode is open."""
        return self._ids[self._active].copy()

    def _index(self) -> None:
        self._members = np.argsort(self._sid, kind="stable").astype(np.int64)
        counts = np.bincount(self._sid, minlength=int(self._sid.max()) + 1 if self._sid.size else 0)
        self._first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def kernel_args(self, batch: SortedBatch) -> tuple[np.ndarray, ...]:
        """The rule arrays and room for the events of `batch`, in ``evaluate_run``'s argument
        order (after ``value``, before ``h``); ``events`` turns the filled room into RuleEvents."""
        capacity = 0
        if self._ids.size:
            n_rules = np.diff(self._first)
            sid = batch.run_sid.astype(np.int64)
            per_run = np.where(sid < n_rules.size, n_rules[np.minimum(sid, n_rules.size - 1)], 0)
            capacity = int((per_run * np.diff(batch.run_bounds)).sum())  # at most one event per reading per rule
        room = (np.empty(capacity, np.int64), np.empty(capacity, np.int64), np.empty(capacity, np.float64),
                np.empty(capacity, bool))
        return (self._first, self._members, self._sign, self._on, self._off, self._hold, self._pending,
                self._active, self._last, *room)

    def events(self, args: tuple[np.ndarray, ...], h: int) -> RuleEvents:
        """The first `h` events written into ``kernel_args``' room."""
        if h == 0:
            return RuleEvents.empty()
        o_rule, o_time, o_value, o_open = args[-4:]
        return RuleEvents(self._ids[o_rule[:h]], o_time[:h].copy(), o_value[:h].copy(), o_open[:h].copy())

    def evaluate(self, batch: SortedBatch) -> RuleEvents:
        """Advance every rule over a sorted batch; the episodes it opened and cleared."""
        if not self._ids.size or not batch.run_sid.size:
            return RuleEvents.empty()
        args = self.kernel_args(batch)
        return self.events(args, _evaluate(batch.run_sid, batch.run_bounds, batch.time, batch.value, *args))
