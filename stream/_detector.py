"""The anomaly detector: per-series streaming state and the scoring kernel.

Streaming, no look-ahead, a fixed handful of numbers per series. Each series' readings are
taken in time order (the batch's stable (series, time) sort). Every evidence is a ratio r that
is 1 where its criterion is met; the score of a piece of evidence is ``1 − 1 / (1 + r)``. For a
finite reading x at time t, against the state left by the *previous* readings:

* ``out_of_range``: x outside the series' physical bounds → score 1.0; x teaches nothing.
* ``spike``: the larger of  z / spike_z  (z = |x − mean| / max(std, min_std), EWMA mean and
  variance) and  novelty / novelty_tol  (how far x lies beyond the range [lo, hi] the series
  has shown, in units of hi − lo);
* ``level_shift``: |fast − mean| / (std · sqrt(a_f / (2 − a_f))) / level_z, where fast is an
  EWMA with level_alpha that includes x (the z of the fast mean under "no change");
* spike and level_shift count after ``warmup`` learned readings, and are *suppressed* (score
  × 0.01) unless their evidence exceeds the series' peak evidence, decayed by
  ρ = exp(−1 / suppress) per reading: an anomaly is reported once, not at every reading of it;
* ``gap``: (Δt / expected − 1) / (gap_factor − 1), Δt the time since the previous reading and
  expected an EWMA of the inter-arrival time (after ``gap_warmup`` intervals);
* ``stuck``: x repeats the previous value for the ``stuck_run``-th time → 1.0.
* ``pattern`` (contextual, after ``warmup``): x is quantised into one of ``ctx_bins`` bins over
  the range [min, max] the series has shown (x included); its contexts are the bins of the
  previous 1 … ``ctx_order`` readings followed by x's bin; the evidence is the fraction of them
  the series' context table has never held (its score is that fraction, not 1 − 1/(1 + r)). It
  is reported only when no flag and no pattern evidence ≥ ``ctx_threshold`` occurred in the
  previous ``ctx_rest`` readings.

The score is the largest; its kind the one that gave it; flagged when score ≥ threshold.
Unless the reading is *late* (older than the newest reading of its series) it is then learned
(an out-of-range reading only advances time): mean/variance (clipped after warm-up, Finch
2009), the fast mean, the range (widened by at most novelty_growth × its width per reading after
warm-up), the peak, the expected interval (Δt > 0 only, clipped at gap_factor × expected).
The result depends only on each series' reading sequence, never on how it was cut into batches.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from stream._constants import (
    CTX_MAX_BINS,
    CTX_WORDS,
    INITIAL_CAPACITY,
    KIND_GAP,
    KIND_LEVEL_SHIFT,
    KIND_NONE,
    KIND_OUT_OF_RANGE,
    KIND_PATTERN,
    KIND_SPIKE,
    KIND_STUCK,
    NO_REST,
    NO_TIME,
    SUPPRESSED_SCALE,
)
from stream._params import (
    P_ALPHA,
    P_CLIP_Z,
    P_CTX_BINS,
    P_CTX_MEMORY,
    P_CTX_ORDER,
    P_CTX_REST,
    P_CTX_THRESHOLD,
    P_GAP_ALPHA,
    P_GAP_FACTOR,
    P_GAP_WARMUP,
    P_LEVEL_ALPHA,
    P_LEVEL_Z,
    P_MIN_STD,
    P_NOVELTY_GROWTH,
    P_NOVELTY_TOL,
    P_SPIKE_Z,
    P_STUCK_RUN,
    P_SUPPRESS_RHO,
    P_THRESHOLD,
    P_WARMUP,
)

__all__ = ["SeriesState", "score_batch"]

_FIELDS: tuple[tuple[str, object, type], ...] = (
    ("mean", 0.0, np.float64), ("var", 0.0, np.float64), ("n", 0, np.int64),
    ("last_time", NO_TIME, np.int64), ("last_value", np.nan, np.float64), ("run", 0, np.int64),
    ("low", -np.inf, np.float64), ("high", np.inf, np.float64),
    ("fast", 0.0, np.float64), ("seen_lo", np.inf, np.float64), ("seen_hi", -np.inf, np.float64),
    ("peak", 0.0, np.float64), ("interval", 0.0, np.float64), ("n_interval", 0, np.int64),
    ("pset", 0, np.int32),
    ("ctx_lo", np.inf, np.float64), ("ctx_hi", -np.inf, np.float64),
    ("ctx_b1", -1, np.int32), ("ctx_b2", -1, np.int32), ("ctx_n", 0, np.int64),
    ("ctx_since", NO_REST, np.int64),
)
_TABLE = "ctx_bits"  # (capacity, 2 · CTX_WORDS) uint64: generation 0 (current) then generation 1


class SeriesState:
    """Per-series detector state, struct-of-arrays indexed by series id (see ``_FIELDS``).

    Grows by amortised doubling when a larger id appears; new slots start empty (nothing
    learned, bounds (-inf, inf), parameter set 0).
    """

    __slots__ = ("n_series", _TABLE, *(name for name, _, _ in _FIELDS))

    def __init__(self, capacity: int = INITIAL_CAPACITY) -> None:
        self.n_series = 0  # 1 + the largest id seen
        for name, fill, dtype in _FIELDS:
            setattr(self, name, np.full(capacity, fill, dtype))
        self.ctx_bits = np.zeros((capacity, 2 * CTX_WORDS), np.uint64)

    @property
    def capacity(self) -> int:
        return self.mean.size

    def ensure(self, max_id: int) -> None:
        """Make room for ids up to `max_id`."""
        if max_id >= self.capacity:
            capacity = max(max_id + 1, 2 * self.capacity)
            for name, fill, dtype in _FIELDS:
                old = getattr(self, name)
                new = np.full(capacity, fill, dtype)
                new[: old.size] = old
                setattr(self, name, new)
            bits = np.zeros((capacity, 2 * CTX_WORDS), np.uint64)
            bits[: self.ctx_bits.shape[0]] = self.ctx_bits
            self.ctx_bits = bits
        self.n_series = max(self.n_series, max_id + 1)


@njit(cache=True, nogil=True, inline="always")
def _evidence_score(r):  # pragma: no cover - compiled
    """1 − 1 / (1 + r) for r ≥ 0 (1.0 for r = inf); NaN evidence (inf / inf) counts as none."""
    if r >= 0.0:
        return 1.0 - 1.0 / (1.0 + r)
    return 0.0


@njit(cache=True, nogil=True, inline="always")
def _ctx_new(bits, s, index):  # pragma: no cover - compiled
    """1 if context `index` is in neither generation of series s's table, else 0; marks it in generation 0."""
    w = index >> 6
    bit = np.uint64(1) << np.uint64(index & 63)
    new = 1 if (bits[s, w] & bit) == 0 and (bits[s, CTX_WORDS + w] & bit) == 0 else 0
    bits[s, w] |= bit
    return new


@njit(cache=True, nogil=True)
def _score_sorted(
    series_id, time, value, order,
    mean, var, n_learned, last_time, last_value, run, low, high,
    fast, seen_lo, seen_hi, peak, interval, n_interval, pset, table,
    ctx_lo, ctx_hi, ctx_b1, ctx_b2, ctx_n, ctx_since, ctx_bits,
    o_score, o_kind, o_flag,
):  # pragma: no cover - compiled
    """Score and learn a batch in (series, time) order.

    ``o_score[order[j]]`` receives the score of sorted reading j (input order); ``o_kind`` and
    ``o_flag`` stay in sorted order. State is read once per series run into locals and written
    back after it; ``table[pset[s]]`` holds the series' parameter vector.
    """
    m = series_id.size
    j = 0
    while j < m:
        s = series_id[j]
        p = table[pset[s]]
        alpha, threshold, warmup, spike_z = p[P_ALPHA], p[P_THRESHOLD], p[P_WARMUP], p[P_SPIKE_Z]
        min_std, clip_z, stuck_run = p[P_MIN_STD], p[P_CLIP_Z], p[P_STUCK_RUN]
        level_alpha, level_z, novelty_tol, growth = p[P_LEVEL_ALPHA], p[P_LEVEL_Z], p[P_NOVELTY_TOL], p[P_NOVELTY_GROWTH]
        gap_factor, gap_alpha, gap_warmup, rho = p[P_GAP_FACTOR], p[P_GAP_ALPHA], p[P_GAP_WARMUP], p[P_SUPPRESS_RHO]
        bins, order2 = int(p[P_CTX_BINS]), p[P_CTX_ORDER] >= 2.0
        ctx_threshold, ctx_rest, ctx_memory = p[P_CTX_THRESHOLD], p[P_CTX_REST], p[P_CTX_MEMORY]
        mu = mean[s]
        v = var[s]
        n = n_learned[s]
        lt = last_time[s]
        lv = last_value[s]
        rn = run[s]
        lo = low[s]
        hi = high[s]
        mf = fast[s]
        slo = seen_lo[s]
        shi = seen_hi[s]
        pk = peak[s]
        dtm = interval[s]
        nd = n_interval[s]
        clo = ctx_lo[s]
        chi = ctx_hi[s]
        b1 = ctx_b1[s]
        b2 = ctx_b2[s]
        cn = ctx_n[s]
        since = ctx_since[s]
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
            strong = False  # a pattern evidence ≥ ctx_threshold after warm-up
            pattern = 0.0  # the pattern score, once out of the rest period
            # gap = (Δt / expected − 1) / (gap_factor − 1), after gap_warmup learned intervals
            gap = 0.0
            dt = 0.0
            if not late and lt != NO_TIME:
                dt = float(t - lt)
                if nd >= gap_warmup and dt > dtm > 0.0:  # dtm can round to 0 (9e15 − 9e15 + 1)
                    gap = (dt / dtm - 1.0) / (gap_factor - 1.0)
            if x < lo or x > hi:
                score = 1.0
                kind = KIND_OUT_OF_RANGE
                flagged = True
            else:
                warm = n >= warmup and n > 0
                std = math.sqrt(v)
                if std < min_std:
                    std = min_std
                d = x - mu
                ev = 0.0
                kind = KIND_SPIKE
                mf_new = x
                if n > 0:
                    a_f = 1.0 / (n + 1)
                    if a_f < level_alpha:
                        a_f = level_alpha
                    mf_new = mf + a_f * (x - mf)
                if warm:
                    # z = |x − mean| / std ; 0/0 (no change, std 0) is z = 0
                    if d != 0.0:
                        ev = abs(d) / std / spike_z if std > 0.0 else math.inf
                    # novelty = distance beyond [lo, hi] seen, in units of hi − lo
                    span = shi - slo
                    if span > 0.0:
                        if x > shi:
                            r = (x - shi) / span / novelty_tol
                            if r > ev:
                                ev = r
                        elif x < slo:
                            r = (slo - x) / span / novelty_tol
                            if r > ev:
                                ev = r
                    # level: |fast − mean| / (std · sqrt(a_f / (2 − a_f)))
                    df = mf_new - mu
                    if df != 0.0:
                        a_l = level_alpha
                        scale = std * math.sqrt(a_l / (2.0 - a_l))  # may underflow to 0 for a subnormal std
                        r = abs(df) / scale / level_z if scale > 0.0 else math.inf
                        if r > ev:
                            ev = r
                            kind = KIND_LEVEL_SHIFT
                score = _evidence_score(ev)
                if ev <= pk and rho > 0.0:  # not above the decayed peak: a repetition
                    score = score * SUPPRESSED_SCALE
                if bins > 0 and not late:
                    # pattern: bin of x over [min, max] seen (x included); contexts (b1, b) and (b2, b1, b)
                    if x < clo:
                        clo = x
                    if x > chi:
                        chi = x
                    f = (x - clo) / (chi - clo) * bins if chi > clo else 0.0
                    b = 0
                    if f >= bins:
                        b = bins - 1
                    elif f > 0.0:  # NaN (inf / inf) lands in bin 0
                        b = int(f)
                    new = 0
                    total = 0
                    if b1 >= 0:
                        total += 1
                        new += _ctx_new(ctx_bits, s, b1 * CTX_MAX_BINS + b)
                        if order2 and b2 >= 0:
                            total += 1
                            new += _ctx_new(ctx_bits, s, CTX_MAX_BINS * CTX_MAX_BINS + (b2 * CTX_MAX_BINS + b1) * CTX_MAX_BINS + b)
                    b2 = b1
                    b1 = b
                    cn += 1
                    if cn >= ctx_memory:  # a new generation: the current one becomes the old one
                        for w in range(CTX_WORDS):
                            ctx_bits[s, CTX_WORDS + w] = ctx_bits[s, w]
                            ctx_bits[s, w] = 0
                        cn = 0
                    if warm and total > 0:
                        raw = new / total
                        strong = raw >= ctx_threshold
                        if since >= ctx_rest:
                            pattern = raw
                repeats = rn + 1 if (n > 0 and x == lv) else 1
                gap_score = _evidence_score(gap)
                if gap_score > score:
                    score = gap_score
                    kind = KIND_GAP
                if stuck_run > 0 and not late and repeats >= stuck_run and score < 1.0:
                    score = 1.0
                    kind = KIND_STUCK
                flagged = score >= threshold  # by the other criteria (these start a rest period)
                if pattern > score:  # the kind stays that of a criterion that flags on its own
                    score = pattern
                    if not flagged:
                        kind = KIND_PATTERN
                if not late:
                    # learn: mean_n = mean + a·d ; var_n = (1 − a)·(var + a·d²), a = max(alpha, 1/n)
                    if warm:
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
                        slo = x
                        shi = x
                    else:
                        mu = mu + a * d
                        v = (1.0 - a) * (v + a * d * d)
                        if not (np.isfinite(mu) and np.isfinite(v)):  # overflow of |x| ≳ 1e154: restart
                            mu = x
                            v = 0.0
                            n = 1
                        w = shi - slo
                        if x > shi:
                            shi = x if (not warm or w <= 0.0 or x <= shi + growth * w) else shi + growth * w
                        elif x < slo:
                            slo = x if (not warm or w <= 0.0 or x >= slo - growth * w) else slo - growth * w
                    mf = mf_new
                    if warm:
                        pk = pk * rho
                        if ev > pk:
                            pk = ev
                    lv = x
                    rn = repeats
            o_score[order[j]] = score
            if score >= threshold:
                o_kind[j] = kind
                o_flag[j] = True
            if not late:
                if flagged or strong:
                    since = 0
                elif since < NO_REST:
                    since += 1
                if dt > 0.0:
                    # expected interval: EWMA of Δt, clipped at gap_factor × expected once learned
                    if nd >= gap_warmup and dt > gap_factor * dtm:
                        dt = gap_factor * dtm
                    nd += 1
                    a_g = 1.0 / nd
                    if a_g < gap_alpha:
                        a_g = gap_alpha
                    dtm = dtm + a_g * (dt - dtm)
                lt = t
            j += 1
        mean[s] = mu
        var[s] = v
        n_learned[s] = n
        last_time[s] = lt
        last_value[s] = lv
        run[s] = rn
        fast[s] = mf
        seen_lo[s] = slo
        seen_hi[s] = shi
        peak[s] = pk
        interval[s] = dtm
        n_interval[s] = nd
        ctx_lo[s] = clo
        ctx_hi[s] = chi
        ctx_b1[s] = b1
        ctx_b2[s] = b2
        ctx_n[s] = cn
        ctx_since[s] = since


def score_batch(
    state: SeriesState, table: np.ndarray,
    order: np.ndarray, series_id: np.ndarray, time: np.ndarray, value: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score a sorted batch (``stream._order.sort_batch``) and advance `state` (ids must fit).

    ``table`` holds one parameter vector (``DetectorParams.vector``) per parameter set.
    Returns (score, kind, flagged): score in input order, kind and flagged in sorted order.
    """
    m = series_id.size
    score = np.empty(m, np.float64)
    kind = np.empty(m, np.int8)
    flagged = np.empty(m, np.bool_)
    _score_sorted(
        series_id, time, value, order,
        state.mean, state.var, state.n, state.last_time, state.last_value, state.run, state.low, state.high,
        state.fast, state.seen_lo, state.seen_hi, state.peak, state.interval, state.n_interval, state.pset,
        table, state.ctx_lo, state.ctx_hi, state.ctx_b1, state.ctx_b2, state.ctx_n, state.ctx_since, state.ctx_bits,
        score, kind, flagged,
    )
    return score, kind, flagged
