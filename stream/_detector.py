"""The first anomaly detector: out-of-range, EWMA z-score spikes and (opt-in) stuck values.

Streaming, no look-ahead, a handful of numbers per series. Each series' readings are taken in
time order (the batch's stable (series, time) sort). For a finite reading x at time t:

* ``out_of_range``: x outside the series' physical bounds [low, high] → score 1.0, flagged;
  the reading does not teach the mean/variance.
* ``spike``: z = |x − mean| / max(std, min_std) against the EWMA mean and variance of the
  *previous* readings; score = 1 − exp(−(z / z_scale)²); flagged when score ≥ threshold, once
  the series has learned ``warmup`` readings (before that the spike score is 0).
* ``stuck`` (when ``stuck_run`` > 0): the value equals the previous ``stuck_run − 1`` learned
  values exactly → score 1.0, flagged.

The reading's score is the largest of these; its kind the one that gave it. Then, unless the
reading is *late* (older than the newest reading the series has seen), it is learned:

    a     = max(alpha, 1 / n)                     n = readings learned, this one included
    d     = clip(x − mean, ±clip_z · std)         (no clipping during warm-up)
    mean += a · d
    var   = (1 − a) · (var + a · d²)              (Finch 2009, incremental EWMA variance)

With a = 1/n the first readings give the exact running mean and population variance, so the
EWMA starts unbiased. Clipping keeps one wild value from hiding the next ones for hundreds of
readings, yet a true level shift is absorbed within a few readings (the clipped update still
grows the variance geometrically). The result depends only on each series' reading sequence,
never on how it was cut into batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from stream._constants import (
    DEFAULT_ALPHA,
    DEFAULT_CLIP_Z,
    DEFAULT_MIN_STD,
    DEFAULT_STUCK_RUN,
    DEFAULT_THRESHOLD,
    DEFAULT_WARMUP,
    DEFAULT_Z_SCALE,
    INITIAL_CAPACITY,
    KIND_NONE,
    KIND_OUT_OF_RANGE,
    KIND_SPIKE,
    KIND_STUCK,
    NO_TIME,
)
from stream._errors import BatchError

__all__ = ["DetectorParams", "SeriesState", "score_batch"]


@dataclass(frozen=True, slots=True)
class DetectorParams:
    """Hyper-parameters of the detector, stored as given.

    alpha      EWMA smoothing of mean and variance, in (0, 1]; ~1/alpha readings of memory.
    threshold  a reading is flagged when its score ≥ threshold, in (0, 1]. With the defaults a
               spike is flagged at |z| ≥ z_scale · sqrt(−ln(1 − threshold)) ≈ 4.55.
    warmup     readings a series must have learned before it can be flagged for a spike.
    z_scale    z-score scale of the map score = 1 − exp(−(z / z_scale)²), > 0.
    min_std    floor on the standard deviation (series unit), ≥ 0; keeps a constant series
               from flagging every rounding-level change.
    clip_z     after warm-up a reading teaches the EWMA at most clip_z standard deviations
               away from the mean, > 0 (``math.inf`` disables clipping).
    stuck_run  flag ``stuck`` when a value repeats this many times in a row; 0 disables
               (the default: many honest series are constant for hours, e.g. rain at 0).
    """

    alpha: float = DEFAULT_ALPHA
    threshold: float = DEFAULT_THRESHOLD
    warmup: int = DEFAULT_WARMUP
    z_scale: float = DEFAULT_Z_SCALE
    min_std: float = DEFAULT_MIN_STD
    clip_z: float = DEFAULT_CLIP_Z
    stuck_run: int = DEFAULT_STUCK_RUN

    def __post_init__(self) -> None:
        checks = [
            (0.0 < self.alpha <= 1.0, "alpha must be in (0, 1]"),
            (0.0 < self.threshold <= 1.0, "threshold must be in (0, 1]"),
            (int(self.warmup) == self.warmup and self.warmup >= 0, "warmup must be an integer >= 0"),
            (0.0 < self.z_scale < math.inf, "z_scale must be finite and > 0"),
            (0.0 <= self.min_std < math.inf, "min_std must be finite and >= 0"),
            (self.clip_z > 0.0, "clip_z must be > 0 (math.inf disables clipping)"),
            (int(self.stuck_run) == self.stuck_run and self.stuck_run >= 0, "stuck_run must be an integer >= 0"),
        ]
        for ok, message in checks:
            if not ok:  # NaN fails every comparison, so it lands here too
                raise BatchError(f"DetectorParams: {message}, got {self}")


class SeriesState:
    """Per-series detector state, struct-of-arrays indexed by series id.

    Grows by amortised doubling when a larger id appears; new slots start empty
    (no readings learned, bounds (-inf, inf)).
    """

    __slots__ = ("high", "last_time", "last_value", "low", "mean", "n", "n_series", "run", "var")

    def __init__(self, capacity: int = INITIAL_CAPACITY) -> None:
        self.n_series = 0  # 1 + the largest id seen
        self.mean = np.zeros(capacity, np.float64)
        self.var = np.zeros(capacity, np.float64)
        self.n = np.zeros(capacity, np.int64)  # readings learned
        self.last_time = np.full(capacity, NO_TIME, np.int64)  # newest reading seen
        self.last_value = np.full(capacity, np.nan, np.float64)  # newest value learned
        self.run = np.zeros(capacity, np.int64)  # how often last_value repeated in a row
        self.low = np.full(capacity, -np.inf, np.float64)
        self.high = np.full(capacity, np.inf, np.float64)

    @property
    def capacity(self) -> int:
        return self.mean.size

    def ensure(self, max_id: int) -> None:
        """Make room for ids up to `max_id`."""
        if max_id >= self.capacity:
            capacity = max(max_id + 1, 2 * self.capacity)
            for name, fill in (
                ("mean", 0.0), ("var", 0.0), ("n", 0), ("last_time", NO_TIME), ("last_value", np.nan),
                ("run", 0), ("low", -np.inf), ("high", np.inf),
            ):
                old = getattr(self, name)
                new = np.full(capacity, fill, old.dtype)
                new[: old.size] = old
                setattr(self, name, new)
        self.n_series = max(self.n_series, max_id + 1)


@njit(cache=True, nogil=True)
def _score_sorted(
    series_id, time, value, order,
    mean, var, n_learned, last_time, last_value, run, low, high,
    alpha, threshold, warmup, z_scale, min_std, clip_z, stuck_run,
    o_score, o_kind, o_flag,
):  # pragma: no cover - compiled
    """Score and learn a batch in (series, time) order.

    ``o_score[order[j]]`` receives the score of sorted reading j (so scores come out in input
    order); ``o_kind`` and ``o_flag`` stay in sorted order.

    State arrays are read once per series run, kept in locals and written back after it.
    """
    m = series_id.size
    j = 0
    while j < m:
        s = series_id[j]
        mu = mean[s]
        v = var[s]
        n = n_learned[s]
        lt = last_time[s]
        lv = last_value[s]
        rn = run[s]
        lo = low[s]
        hi = high[s]
        while j < m and series_id[j] == s:
            x = value[j]
            t = time[j]
            o_kind[j] = KIND_NONE
            o_flag[j] = False
            if not np.isfinite(x):
                o_score[order[j]] = np.nan
                j += 1
                continue
            late = t < lt
            if x < lo or x > hi:
                o_score[order[j]] = 1.0
                o_kind[j] = KIND_OUT_OF_RANGE
                o_flag[j] = True
                if not late:
                    lt = t
                j += 1
                continue
            std = math.sqrt(v)
            if std < min_std:
                std = min_std
            d = x - mu
            score = 0.0
            kind = KIND_SPIKE
            if n >= warmup and n > 0:
                # score = 1 − exp(−(|x − mean| / std / z_scale)²); 0/0 (no change, std 0) is z = 0
                if d == 0.0:
                    q = 0.0
                elif std == 0.0:  # min_std = 0 and a constant past
                    q = math.inf
                else:
                    q = abs(d) / std / z_scale
                score = 1.0 - math.exp(-(q * q))
            repeats = rn + 1 if (n > 0 and x == lv) else 1
            if stuck_run > 0 and not late and repeats >= stuck_run and score < 1.0:
                score = 1.0
                kind = KIND_STUCK
            o_score[order[j]] = score
            if score >= threshold:
                o_kind[j] = kind
                o_flag[j] = True
            if not late:
                if n >= warmup and n > 0:
                    c = clip_z * std
                    if d > c:
                        d = c
                    elif d < -c:
                        d = -c
                n += 1
                a = 1.0 / n
                if a < alpha:
                    a = alpha
                if n == 1:
                    mu = x
                    v = 0.0
                else:
                    # mean_n = mean + a·d ;  var_n = (1 − a)·(var + a·d²)
                    mu = mu + a * d
                    v = (1.0 - a) * (v + a * d * d)
                    if not (np.isfinite(mu) and np.isfinite(v)):  # overflow of |x| ≳ 1e154: restart
                        mu = x
                        v = 0.0
                        n = 1
                lv = x
                rn = repeats
                lt = t
            j += 1
        mean[s] = mu
        var[s] = v
        n_learned[s] = n
        last_time[s] = lt
        last_value[s] = lv
        run[s] = rn


def score_batch(
    state: SeriesState, params: DetectorParams,
    order: np.ndarray, series_id: np.ndarray, time: np.ndarray, value: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score a sorted batch (``stream._order.sort_batch``) and advance `state` (ids must fit).

    Returns (score, kind, flagged): score in input order, kind and flagged in sorted order.
    """
    m = series_id.size
    score = np.empty(m, np.float64)
    kind = np.empty(m, np.int8)
    flagged = np.empty(m, np.bool_)
    _score_sorted(
        series_id, time, value, order,
        state.mean, state.var, state.n, state.last_time, state.last_value, state.run, state.low, state.high,
        float(params.alpha), float(params.threshold), int(params.warmup), float(params.z_scale),
        float(params.min_std), float(params.clip_z), int(params.stuck_run),
        score, kind, flagged,
    )
    return score, kind, flagged
