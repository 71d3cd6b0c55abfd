"""The anomaly detector: the scoring kernel (its per-series state is in ``stream._state``).

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
    KIND_GAP,
    KIND_LEVEL_SHIFT,
    KIND_OUT_OF_RANGE,
    KIND_PATTERN,
    KIND_SPIKE,
    KIND_STUCK,
    NO_REST,
    CRITERION_MET,
    NO_TIME,
    SUPPRESSED_SCALE,
)
from stream._order import SortedBatch
from stream._params import (
    P_ALPHA,
    P_CLIP_Z,
    P_RECENT_DECAY,
    P_RECENT_TOL,
    P_CTX_BINS,
    P_CTX_Z,
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
from stream._results import Anomalies
from stream._rules import RuleEvents, ThresholdRules, evaluate_run
from stream._state import HitBuffers, SeriesState
from stream._windows import AggregateBuffers, aggregate_run, width_us_of

__all__ = ["score_batch"]


@njit(cache=True, nogil=True, inline="always")
def _evidence_score(r):  # pragma: no cover - compiled
    """1 − 1 / (1 + r) for r ≥ 0 (1.0 for r = inf); NaN evidence (inf / inf) counts as none."""
    if r > 0.0:
        return 1.0 - 1.0 / (1.0 + r)
    return 0.0  # r = ±0 gives 0.0 either way: no division (most readings carry no evidence)


@njit(cache=True, nogil=True, inline="always")
def _beyond(x, lo, hi, tol):  # pragma: no cover - compiled
    """How far x lies beyond [lo, hi] in units of hi − lo, over tol; 0 inside or for an empty range."""
    span = hi - lo
    if span > 0.0:
        if x > hi:
            return (x - hi) / span / tol
        if x < lo:
            return (lo - x) / span / tol
    return 0.0


@njit(cache=True, nogil=True, inline="always")
def _widen(x, lo, hi, width, limited, growth):  # pragma: no cover - compiled
    """[lo, hi] widened to take x; when `limited` (after warm-up) by at most growth × width."""
    if x > hi:
        hi = x if (not limited or width <= 0.0 or x <= hi + growth * width) else hi + growth * width
    elif x < lo:
        lo = x if (not limited or width <= 0.0 or x >= lo - growth * width) else lo - growth * width
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _rate_count(rate):  # pragma: no cover - compiled
    """A count k with 1 / c < rate for every count c ≥ k, so that max(1 / c, rate) is `rate`
    without dividing (NO_REST when rate is not a positive number far above 2^-52)."""
    if rate > 0.0 and 1.0 / rate < 2.0**52:
        return int(1.0 / rate) + 2  # > 1 / rate even after the rounding of 1.0 / rate
    return NO_REST


@njit(cache=True, nogil=True, inline="always")
def _ctx_new(bits, index):  # pragma: no cover - compiled
    """1 if context `index` is in neither generation of a series' table `bits`, else 0; marks it
    in generation 0. Branch-free: whether a context is new is a coin flip on noisy data."""
    w = index >> 6
    bit = np.uint64(1) << np.uint64(index & 63)
    seen = (bits[w] | bits[CTX_WORDS + w]) & bit
    bits[w] |= bit
    return np.int64(seen == 0)


# error_model="numpy": x / 0 gives ±inf/NaN instead of raising, so that no division carries a
# zero test, and the gap evidence can be computed before it is known to be used (then discarded).
@njit(cache=True, nogil=True, error_model="numpy")
def _score_runs(
    run_sid, run_bounds, time, value, order,
    mean, var, n_learned, last_time, last_value, run, low, high,
    fast, seen_lo, seen_hi, peak, interval, n_interval, pset, table,
    ctx_lo, ctx_hi, ctx_b1, ctx_b2, ctx_n, ctx_since, recent_lo, recent_hi, ctx_bits,
    o_score, a_sid, a_time, a_value, a_score, a_kind, n_hits,
    width_us, rows, g_sid, g_bucket, g_count, g_sum, g_min, g_max, g_last, g_last_time, g_m2,
    first, members, sign, on, off, hold, pending, active, last, e_rule, e_time, e_value, e_open, n_events,
):  # pragma: no cover - compiled
    """Score and learn a sorted batch, series run by series run (``stream._order``), and
    reduce each run into the window aggregates (``aggregate_run``) and advance the threshold
    rules over it (``evaluate_run``, events appended at ``n_events[0]``) while it is in cache.

    ``o_score[order[j]]`` receives the score of sorted reading j (input order); flagged
    readings are appended, in sorted order, to ``a_*`` at ``n_hits[0]``. State is read once
    per series run into locals and written back after it; ``table[pset[s]]`` holds the
    series' parameter vector. With ``width_us`` empty no aggregate is computed.
    """
    for r in range(run_sid.size):
        j = run_bounds[r]
        end = run_bounds[r + 1]
        if end <= j:
            continue
        run_lo = j
        s = run_sid[r]
        h = n_hits[0]
        p = table[pset[s]]
        alpha, threshold, warmup, spike_z = p[P_ALPHA], p[P_THRESHOLD], p[P_WARMUP], p[P_SPIKE_Z]
        min_std, clip_z, stuck_run = p[P_MIN_STD], p[P_CLIP_Z], p[P_STUCK_RUN]
        level_alpha, level_z, novelty_tol, growth = p[P_LEVEL_ALPHA], p[P_LEVEL_Z], p[P_NOVELTY_TOL], p[P_NOVELTY_GROWTH]
        gap_factor, gap_alpha, gap_warmup, rho = p[P_GAP_FACTOR], p[P_GAP_ALPHA], p[P_GAP_WARMUP], p[P_SUPPRESS_RHO]
        bins, order2 = int(p[P_CTX_BINS]), p[P_CTX_ORDER] >= 2.0
        ctx_threshold, ctx_rest, ctx_memory = p[P_CTX_THRESHOLD], p[P_CTX_REST], p[P_CTX_MEMORY]
        ctx_z, recent_decay, recent_tol = p[P_CTX_Z], p[P_RECENT_DECAY], p[P_RECENT_TOL]
        bits = ctx_bits[s]  # the series' context table, both generations
        level_unit = math.sqrt(level_alpha / (2.0 - level_alpha))  # the fast mean's std per unit std
        # Divisions are most of the arithmetic: skip those whose result is known exactly.
        n_alpha, n_level, n_gap = _rate_count(alpha), _rate_count(level_alpha), _rate_count(gap_alpha)
        spike_off, level_off = spike_z == math.inf, level_z == math.inf  # x / inf is 0 for finite x
        gap_on = gap_factor < math.inf  # else the gap score is 0 (or NaN, discarded): three divisions saved
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
        rlo = recent_lo[s]
        rhi = recent_hi[s]
        while j < end:
            x = value[j]
            t = time[j]
            if not np.isfinite(x):
                o_score[order[j]] = np.nan
                j += 1
                continue
            late = t < lt
            strong = False  # a pattern evidence ≥ ctx_threshold after warm-up
            pattern = 0.0  # the pattern score, once out of the rest period
            # gap = (Δt / expected − 1) / (gap_factor − 1), after gap_warmup learned intervals
            gap_score = 0.0  # the score of gap evidence (dt / expected − 1) / (gap_factor − 1) when dt > expected
            dt = 0.0
            if not late and lt != NO_TIME:
                dt = float(t - lt)
                if gap_on and nd >= gap_warmup and dtm > 0.0:  # dtm can round to 0 (9e15 − 9e15 + 1)
                    # Computed whether or not dt > dtm, then selected: jittered arrivals make that
                    # test a coin flip, too costly as a branch.
                    gap = (dt / dtm - 1.0) / (gap_factor - 1.0)
                    gap_exact = 1.0 - 1.0 / (1.0 + gap)
                    gap_score = gap_exact if (dt > dtm and gap > 0.0) else 0.0
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
                    if n + 1 >= n_level:
                        a_f = level_alpha
                    else:
                        a_f = 1.0 / (n + 1)
                        if a_f < level_alpha:
                            a_f = level_alpha
                    mf_new = mf + a_f * (x - mf)
                if warm:
                    # z = |x − mean| / std ; 0/0 (no change, std 0) is z = 0
                    if d != 0.0 and not (spike_off and abs(d) < std * 1e300):  # else |d| / std is finite: ev 0
                        ev = abs(d) / std / spike_z if std > 0.0 else math.inf
                    # novelty = distance beyond the range seen, and beyond the recent range
                    r = _beyond(x, slo, shi, novelty_tol)
                    if r > ev:
                        ev = r
                    r = _beyond(x, rlo, rhi, recent_tol)
                    if r > ev:
                        ev = r
                    # level: |fast − mean| / (std · sqrt(a_f / (2 − a_f)))
                    df = mf_new - mu
                    scale = std * level_unit  # may underflow to 0 for a subnormal std
                    if df != 0.0 and not (level_off and abs(df) < scale * 1e300):  # else r is 0
                        r = abs(df) / scale / level_z if scale > 0.0 else math.inf
                        if r > ev:
                            ev = r
                            kind = KIND_LEVEL_SHIFT
                score = _evidence_score(ev)
                # not above the decayed peak: a repetition (selects, not branches, from here on
                # where the outcome follows the noise of the data)
                score = score * SUPPRESSED_SCALE if ((ev <= pk) & (rho > 0.0)) else score
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
                        new += _ctx_new(bits, b1 * CTX_MAX_BINS + b)
                        if order2 and b2 >= 0:
                            total += 1
                            new += _ctx_new(bits, CTX_MAX_BINS * CTX_MAX_BINS + (b2 * CTX_MAX_BINS + b1) * CTX_MAX_BINS + b)
                    b2 = b1
                    b1 = b
                    cn += 1
                    if cn >= ctx_memory:  # a new generation: the current one becomes the old one
                        for w in range(CTX_WORDS):
                            bits[CTX_WORDS + w] = bits[w]
                            bits[w] = 0
                        cn = 0
                    if warm and total > 0:
                        raw = new * 0.5 if total == 2 else float(new)  # new / total, exactly (total ≤ 2)
                        strong = raw >= ctx_threshold
                        if since >= ctx_rest and abs(d) >= ctx_z * std:
                            pattern = raw
                repeats = rn + 1 if (n > 0 and x == lv) else 1
                take = (gap_score > score) & warm  # no flag of any kind during the warm-up
                score = gap_score if take else score
                kind = KIND_GAP if take else kind
                if stuck_run > 0 and warm and not late and repeats >= stuck_run and score < 1.0:
                    score = 1.0
                    kind = KIND_STUCK
                flagged = score >= CRITERION_MET  # a criterion met on its own starts a rest period
                take = pattern > score  # the kind stays that of a criterion that flags on its own
                score = pattern if take else score
                kind = KIND_PATTERN if (take & (not flagged)) else kind
                if not late:
                    # learn: mean_n = mean + a·d ; var_n = (1 − a)·(var + a·d²), a = max(alpha, 1/n)
                    if warm:
                        c = clip_z * std
                        if d > c:
                            d = c
                        elif d < -c:
                            d = -c
                    n += 1
                    if n >= n_alpha:
                        a = alpha
                    else:
                        a = 1.0 / n
                        if a < alpha:
                            a = alpha
                    if n == 1:
                        mu = x
                        v = 0.0
                        slo = x
                        shi = x
                        rlo = x
                        rhi = x
                    else:
                        mu = mu + a * d
                        v = (1.0 - a) * (v + a * d * d)
                        if not (np.isfinite(mu) and np.isfinite(v)):  # overflow of |x| ≳ 1e154: restart
                            mu = x
                            v = 0.0
                            n = 1
                        slo, shi = _widen(x, slo, shi, shi - slo, warm, growth)
                        # the recent range forgets: both ends decay towards the mean, then widen
                        w = rhi - rlo
                        rlo, rhi = _widen(x, mu - (mu - rlo) * recent_decay, mu + (rhi - mu) * recent_decay,
                                          w, warm, growth)
                    mf = mf_new
                    if warm:
                        pk = pk * rho
                        pk = ev if ev > pk else pk
                    lv = x
                    rn = repeats
            o_score[order[j]] = score
            if score >= threshold:
                a_sid[h] = s
                a_time[h] = t
                a_value[h] = x
                a_score[h] = score
                a_kind[h] = kind
                h += 1
            if not late:
                since = 0 if (flagged | strong) else (since + 1 if since < NO_REST else since)
                if dt > 0.0:
                    # expected interval: EWMA of Δt, clipped at gap_factor × expected once learned
                    if nd >= gap_warmup and dt > gap_factor * dtm:
                        dt = gap_factor * dtm
                    nd += 1
                    if nd >= n_gap:
                        a_g = gap_alpha
                    else:
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
        recent_lo[s] = rlo
        recent_hi[s] = rhi
        n_hits[0] = h
        if width_us.size:
            aggregate_run(s, time, value, run_lo, end, width_us, rows,
                          g_sid, g_bucket, g_count, g_sum, g_min, g_max, g_last, g_last_time, g_m2)
        n_events[0] = evaluate_run(s, run_lo, end, time, value, first, members, sign, on, off, hold,
                                   pending, active, last, e_rule, e_time, e_value, e_open, n_events[0])


def score_batch(
    state: SeriesState, table: np.ndarray, batch: SortedBatch, aggregates: AggregateBuffers | None = None,
    hit_buffers: HitBuffers | None = None, rules: ThresholdRules | None = None,
) -> tuple[np.ndarray, Anomalies, RuleEvents]:
    """Score a sorted batch (``stream._order.sort_runs``) and advance `state` (ids must fit);
    with `aggregates`, also fill its rows for every width in the same walk, and with `rules`
    advance them over it too.

    ``table`` holds one parameter vector (``DetectorParams.vector``) per parameter set.
    Returns (score in input order, the flagged readings in (series, time) order, the rule events).
    """
    m = batch.time.size
    score = np.empty(m, np.float64)
    hits = np.zeros(1, np.int64)
    a_sid, a_time, a_value, a_score, a_kind = (hit_buffers or HitBuffers()).arrays(m)
    if aggregates is None:
        width_us, rows = np.zeros(0, np.int64), np.zeros(0, np.int64)
        outputs = (np.zeros(0, np.int32),) + tuple(
            np.zeros(0, dt) for dt in (np.int64, np.int64, np.float64, np.float64, np.float64, np.float64,
                                            np.int64, np.float64))
    else:
        width_us, rows, outputs = width_us_of(aggregates.widths_s), aggregates.rows, aggregates.arrays()
    rules = ThresholdRules() if rules is None else rules  # an empty one is falsy (len 0)
    rule_args, events = rules.kernel_args(batch), np.zeros(1, np.int64)
    _score_runs(
        batch.run_sid, batch.run_bounds, batch.time, batch.value, batch.order,
        state.mean, state.var, state.n, state.last_time, state.last_value, state.run, state.low, state.high,
        state.fast, state.seen_lo, state.seen_hi, state.peak, state.interval, state.n_interval, state.pset,
        table, state.ctx_lo, state.ctx_hi, state.ctx_b1, state.ctx_b2, state.ctx_n, state.ctx_since, state.recent_lo, state.recent_hi, state.ctx_bits,
        score, a_sid, a_time, a_value, a_score, a_kind, hits,
        width_us, rows, *outputs, *rule_args, events,
    )
    h = int(hits[0])
    # Copies: the hit buffers are sized for the whole batch and reused.
    anomalies = Anomalies.build(a_sid[:h].copy(), a_time[:h].copy(), a_value[:h].copy(), a_score[:h].copy(),
                                a_kind[:h].copy())
    return score, anomalies, rules.events(rule_args, int(events[0]))
