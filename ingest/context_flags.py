"""Flags that depend on the readings before them, checked against the database when several
ingest workers share the subscription.

On a shared subscription (``citylab up --ingest-workers N``, ``CITYLAB_INGEST_SHARE_GROUP``)
the broker deals a device's packs to any worker, so each worker's detector sees a share of a
series: between two of its packs lie packs another worker stored. The detector cannot know
that, and what it would flag from its own view of a series' past is not to be trusted:

* ``gap``: the hole before a worker's pack is usually another worker's pack;
* ``stuck``: the run of equal values may be interrupted by readings another worker holds;
* ``pattern``: the context (the previous readings) may not be the series' previous readings.

So, before the batch's flags are stored, every flag of these kinds is checked against what all
workers committed (``storage.preceding``, one statement per batch, after the watermark locks
so that a transaction sees the packs of its device committed before it):

* a series of a pack whose device still has an earlier pack (of the same boot) not committed
  is *unsettled*: the pack that would decide the flag is in flight, and its flags are dropped;
* a ``gap`` stands when the time since the series' newest stored reading before it is, against
  the median of the last ``DEPTH - 1`` stored intervals, a gap at the series' operating point;
  its score is recomputed from those stored times;
* a ``stuck`` stands when the ``stuck_run - 1`` stored readings before it equal its value;
* a ``pattern`` stands when the series' newest stored reading before it is in the same batch
  (the context the detector used is the stored one).

The silence rules' timer (``ingest.rules``) uses ``stored_cadence`` the same way. With one
worker none of this runs: a worker that sees every pack of its devices knows their past.
"""

from __future__ import annotations

import numpy as np
import psycopg

from storage.preceding import NO_READING, preceding_readings
from stream import ANOMALY_KINDS, Anomalies, StreamProcessor

__all__ = ["CONTEXT_KINDS", "DEPTH", "ContextCheck", "stored_cadence"]

CONTEXT_KINDS = ("gap", "stuck", "pattern")
DEPTH = 11
"""Stored readings read before a candidate: its predecessor and the 10 intervals before it."""
MIN_INTERVALS = 3
"""Fewer stored intervals than this: the cadence is not known, no gap or silence is flagged."""

_GAP, _STUCK, _PATTERN = (ANOMALY_KINDS.index(k) for k in CONTEXT_KINDS)


def stored_cadence(times: np.ndarray, min_intervals: int = MIN_INTERVALS) -> tuple[np.ndarray, np.ndarray]:
    """From ``preceding_readings``'s time matrix (newest first): each row's newest time and the
    median of its intervals (NaN where fewer than `min_intervals` are stored)."""
    newer, older = times[:, :-1], times[:, 1:]
    intervals = np.where(older != NO_READING, newer - older, 0).astype(np.float64)
    intervals[(older == NO_READING) | (intervals <= 0)] = np.nan
    known = np.isfinite(intervals).sum(axis=1) >= max(min_intervals, 1)
    expected = np.full(times.shape[0], np.nan)
    if known.any():
        expected[known] = np.nanmedian(intervals[known], axis=1)
    return times[:, 0], expected


class ContextCheck:
    """Drops the context flags of a batch that the stored readings of all workers refute."""

    def __init__(self, processor: StreamProcessor) -> None:
        self._processor = processor

    def verify(self, conn: psycopg.Connection, anomalies: Anomalies, series_id: np.ndarray, time_us: np.ndarray,
               unsettled: np.ndarray) -> Anomalies:
        """The flags of `anomalies` that stand, in the caller's transaction (the batch's readings
        `series_id`, `time_us` already written); `unsettled`: series ids whose flags cannot be known."""
        a = anomalies
        candidate = np.isin(a.kind, (_GAP, _STUCK, _PATTERN))
        if not candidate.any():
            return a
        keep = ~candidate
        score = a.score.copy()
        ask = np.flatnonzero(candidate & ~np.isin(a.series_id, unsettled))
        if ask.size:
            sid, t, x, kind = a.series_id[ask], a.time[ask], a.value[ask], a.kind[ask]
            params = {s: self._processor.params_of(s) for s in np.unique(sid).tolist()}
            factor, threshold, run, warmup = (np.array([getattr(params[s], name) for s in sid.tolist()], np.float64)
                                              for name in ("gap_factor", "threshold", "stuck_run", "gap_warmup"))
            stuck = kind == _STUCK
            times, repeats = preceding_readings(conn, sid, t, depth=DEPTH, value=x,
                                                run=np.where(stuck, np.maximum(run - 1, 0), 0).astype(np.int64))
            # gap: (Δt / expected − 1) / (gap_factor − 1), with the stored Δt and expected interval
            prev, expected = stored_cadence(times, MIN_INTERVALS)
            known = (prev != NO_READING) & np.isfinite(expected)
            n_intervals = (times[:, 1:] != NO_READING).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                dt = (t - prev).astype(np.float64)
                gap = (dt / expected - 1.0) / (factor - 1.0)
                gap_score = np.where(known & (dt > expected) & (gap > 0.0), 1.0 - 1.0 / (1.0 + gap), 0.0)
            gap_ok = (kind == _GAP) & (n_intervals >= np.minimum(warmup, DEPTH - 1)) & (gap_score >= threshold)
            stuck_ok = stuck & (repeats == np.maximum(run - 1, 0))
            pattern_ok = (kind == _PATTERN) & _in_batch(sid, prev, series_id, time_us)
            keep[ask] = gap_ok | stuck_ok | pattern_ok
            score[ask] = np.where(gap_ok, gap_score, a.score[ask])
        if keep.all():
            return a
        return Anomalies.build(a.series_id[keep], a.time[keep], a.value[keep], score[keep], a.kind[keep])


def _in_batch(sid: np.ndarray, time_us: np.ndarray, series_id: np.ndarray, batch_time: np.ndarray) -> np.ndarray:
    """Whether each (sid[i], time_us[i]) is a reading of the batch."""
    found = np.zeros(sid.size, dtype=bool)
    for s in np.unique(sid).tolist():
        mine = sid == s
        found[mine] = np.isin(time_us[mine], batch_time[series_id == s])
    return found
