"""StreamProcessor: the façade ingest calls once per columnar batch."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from stream._batch import as_series_ids, as_values, validated_batch
from stream._constants import DEFAULT_WIDTHS_S, MAX_WIDTH_S, NO_TIME
from stream._detector import score_batch
from stream._errors import BatchError
from stream._order import Scratch, row_bounds, sort_runs
from stream._params import P_GAP_FACTOR, P_GAP_WARMUP, DetectorParams
from stream._results import Aggregates, Anomalies, BatchResult
from stream._rules import ThresholdRules
from stream._state import HitBuffers, SeriesState
from stream._windows import AggregateBuffers, width_us_of

__all__ = ["StreamProcessor"]


def _widths(widths_s: Sequence[int]) -> tuple[int, ...]:
    try:
        widths = tuple(operator.index(w) for w in widths_s)
    except TypeError as exc:
        raise BatchError(f"widths_s must be integers (seconds), got {widths_s!r}") from exc
    if not widths:
        raise BatchError("widths_s must name at least one window width")
    if len(set(widths)) != len(widths):
        raise BatchError(f"widths_s has duplicates: {widths}")
    for w in widths:
        if not 1 <= w <= MAX_WIDTH_S:
            raise BatchError(f"window width {w} s is outside [1, {MAX_WIDTH_S}]")
    return widths


class StreamProcessor:
    """Windowed partial aggregates and anomaly scores for a stream of columnar batches.

    Keeps bounded per-series state in memory (struct-of-arrays indexed by series id, grown on
    demand); one instance per ingest worker. Not thread-safe: call ``process`` from one thread.

    >>> import numpy as np
    >>> proc = StreamProcessor(widths_s=(60,), params=DetectorParams(
    ...     threshold=0.5, spike_z=5.0, novelty_tol=float("inf"), recent_tol=float("inf"), ctx_bins=0))
    >>> rng = np.random.default_rng(7)
    >>> values = 20.0 + rng.normal(0.0, 0.5, 100)
    >>> values[80] = 35.0                                  # a spike
    >>> result = proc.process(np.zeros(100, np.int32), np.arange(100) * 10_000_000, values)
    >>> [int(c) for c in result.aggregates[0].count]       # 10 s cadence, 60 s windows
    [6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 4]
    >>> result.anomalies.kind_names, result.anomalies.time.tolist()
    (['spike'], [800000000])
    """

    def __init__(self, *, widths_s: Sequence[int] = DEFAULT_WIDTHS_S, params: DetectorParams = DetectorParams()) -> None:
        if not isinstance(params, DetectorParams):
            raise BatchError(f"params must be DetectorParams, got {type(params).__name__}")
        self.widths_s = _widths(widths_s)
        self.params = params
        self._state = SeriesState()
        self._scratch = Scratch()
        self._hits = HitBuffers()
        self._width_us = width_us_of(self.widths_s)
        self._param_sets: list[DetectorParams] = [params]  # set 0: the default of every series
        self._table = params.vector()[None, :]
        self.rules = ThresholdRules()  # threshold rules evaluated on every batch (``BatchResult.rule_events``)

    def set_params(self, series_id: Any, params: DetectorParams) -> None:
        """Use `params` for these series from their next reading on (learned state is kept)."""
        if not isinstance(params, DetectorParams):
            raise BatchError(f"params must be DetectorParams, got {type(params).__name__}")
        sid = as_series_ids(np.atleast_1d(series_id))
        if sid.size == 0:
            return
        if params not in self._param_sets:
            self._param_sets.append(params)
            self._table = np.vstack([self._table, params.vector()[None, :]])
        self._state.ensure(int(sid.max()))
        self._state.pset[sid] = self._param_sets.index(params)

    def params_of(self, series_id: int) -> DetectorParams:
        """The parameters series `series_id` is scored with."""
        if 0 <= series_id < self._state.n_series:
            return self._param_sets[int(self._state.pset[series_id])]
        return self.params

    def check_gaps(self, now_us: int, *, factor: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Series whose next reading is overdue at `now_us`: (series_id int32, overdue_us int64).

        A series is overdue when it has learned at least ``gap_warmup`` intervals and its newest
        reading is more than ``gap_factor`` × its expected interval older than `now_us` (`factor`,
        when given, in place of every series' ``gap_factor``: an alert rule's "no reading for N
        expected intervals"); ``overdue_us`` is how long ago that limit passed. Read-only: the
        reading that ends the gap is still scored ``gap`` when it arrives.
        """
        st, k = self._state, self._state.n_series
        table = self._table[st.pset[:k]]
        warm = table[:, P_GAP_WARMUP]
        factor = table[:, P_GAP_FACTOR] if factor is None else float(factor)
        with np.errstate(invalid="ignore", over="ignore"):
            limit = st.last_time[:k] + factor * st.interval[:k]
            due = (st.n_interval[:k] >= warm) & (st.last_time[:k] != NO_TIME) & np.isfinite(limit) & (now_us > limit)
        ids = np.flatnonzero(due).astype(np.int32)
        return ids, (now_us - limit[ids]).astype(np.int64)

    @property
    def n_series(self) -> int:
        """Series id slots in use: 1 + the largest series id seen so far (0 before any)."""
        return self._state.n_series

    def set_bounds(self, series_id: Any, low: Any, high: Any) -> None:
        """Set the physical bounds of series; values outside [low, high] are flagged out_of_range.

        ``low``/``high`` broadcast against ``series_id``; ±inf means unbounded on that side
        (the default of every series).
        """
        sid = as_series_ids(series_id)
        lo, hi = as_values(np.atleast_1d(low), "low"), as_values(np.atleast_1d(high), "high")
        try:
            lo, hi = np.broadcast_to(lo, sid.shape), np.broadcast_to(hi, sid.shape)
        except ValueError as exc:
            raise BatchError(f"bounds do not match series_id of length {sid.size}: {exc}") from exc
        if np.isnan(lo).any() or np.isnan(hi).any():
            raise BatchError("bounds must not be NaN (use -inf / inf for no bound)")
        if (lo > hi).any():
            i = int(np.argmax(lo > hi))
            raise BatchError(f"series {int(sid[i])}: low {lo[i]} > high {hi[i]}")
        if sid.size == 0:
            return
        self._state.ensure(int(sid.max()))
        self._state.low[sid] = lo
        self._state.high[sid] = hi

    def process(self, series_id: Any, time: Any, value: Any, *, rules: bool = True) -> BatchResult:
        """Aggregate and score one batch; advances the per-series detector state, and with
        `rules` the threshold rules' episodes (without: a replay of readings they already saw)."""
        sid, t, v, sid_min, sid_max = validated_batch(series_id, time, value)
        if sid.size == 0:
            return BatchResult(
                tuple(Aggregates.empty(w) for w in self.widths_s), Anomalies.empty(), _readonly(np.zeros(0)),
            )
        self._state.ensure(sid_max)
        batch = sort_runs(sid, t, v, self._scratch, sid_min, sid_max)
        buffers = AggregateBuffers(self.widths_s, row_bounds(batch, self._width_us))
        # aggregates and threshold rules in the same walk, each series run while it is in cache
        scores, anomalies, events = score_batch(self._state, self._table, batch, buffers, self._hits,
                                                self.rules if rules else None)
        return BatchResult(buffers.results(), anomalies, _readonly(scores), events)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array
