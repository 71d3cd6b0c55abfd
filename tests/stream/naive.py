"""Slow, obviously correct twins of the stream kernels (pure Python over lists, like stumpy's naive.py).

Nothing here is fast or clever: readings are grouped with dicts, sorted with ``sorted`` on
explicit keys, and every rule of the detector is written out once, reading by reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stream._constants import (
    CRITERION_MET,
    KIND_GAP,
    KIND_LEVEL_SHIFT,
    KIND_NONE,
    KIND_OUT_OF_RANGE,
    KIND_PATTERN,
    KIND_SPIKE,
    KIND_STUCK,
    NO_REST,
    SUPPRESSED_SCALE,
    US_PER_S,
)
from stream._params import DetectorParams

Row = dict[str, float | int]


def time_order(series_id, time) -> list[int]:
    """Indices sorted by (series, time, input position): the stable (series, time) order."""
    return sorted(range(len(series_id)), key=lambda i: (int(series_id[i]), int(time[i]), i))


def aggregate(series_id, time, value, width_s: int) -> dict[tuple[int, int], Row]:
    """{(series, bucket): row} over the finite values, from first principles."""
    width_us = width_s * US_PER_S
    groups: dict[tuple[int, int], list[tuple[int, int, float]]] = {}
    for i in range(len(series_id)):
        x = float(value[i])
        if not math.isfinite(x):
            continue
        t = int(time[i])
        bucket = (t // width_us) * width_us  # Python ints: exact floor, also before 1970
        assert bucket <= t < bucket + width_us and bucket % width_us == 0
        groups.setdefault((int(series_id[i]), bucket), []).append((t, i, x))
    rows = {}
    for key, readings in groups.items():
        xs = [x for _, _, x in readings]
        mean = math.fsum(xs) / len(xs)
        last_t, _, last_x = max(readings)  # greatest time, then the later input position
        rows[key] = {
            "count": len(xs), "sum": math.fsum(xs), "min": min(xs), "max": max(xs),
            "last": last_x, "last_time": last_t, "m2": math.fsum((x - mean) ** 2 for x in xs),
        }
    return rows


def rows_of(aggregates) -> dict[tuple[int, int], Row]:
    """The kernel's Aggregates as the same {(series, bucket): row} mapping."""
    rows = {}
    for r in range(len(aggregates)):
        key = (int(aggregates.series_id[r]), int(aggregates.bucket[r]))
        assert key not in rows, f"two rows for {key}"
        rows[key] = {name: getattr(aggregates, name)[r].item() for name in
                     ("count", "sum", "min", "max", "last", "last_time", "m2")}
    return rows


def merge(stored: Row, new: Row) -> Row:
    """Merge a newer partial into a stored row, exactly as storage's upsert does (Chan et al.)."""
    n = stored["count"] + new["count"]
    delta = new["sum"] / new["count"] - stored["sum"] / stored["count"]
    newer_last = new["last_time"] >= stored["last_time"]
    return {
        "count": n,
        "sum": stored["sum"] + new["sum"],
        "min": min(stored["min"], new["min"]),
        "max": max(stored["max"], new["max"]),
        "last": new["last"] if newer_last else stored["last"],
        "last_time": max(stored["last_time"], new["last_time"]),
        "m2": stored["m2"] + new["m2"] + delta * delta * stored["count"] * new["count"] / n,
    }


@dataclass
class _Series:
    mean: float = 0.0
    var: float = 0.0
    n: int = 0
    last_time: int | None = None
    last_value: float | None = None
    run: int = 0
    low: float = -math.inf
    high: float = math.inf
    fast: float = 0.0
    seen_lo: float = math.inf
    seen_hi: float = -math.inf
    recent_lo: float = math.inf  # the recent range: forgets towards the mean
    recent_hi: float = -math.inf
    peak: float = 0.0
    interval: float = 0.0
    n_interval: int = 0
    params: DetectorParams | None = None
    # contextual detector: range, previous bins, readings in this generation, readings since a flag
    ctx_lo: float = math.inf
    ctx_hi: float = -math.inf
    bins: list[int] = field(default_factory=list)  # the bins of the last two readings, newest last
    ctx_n: int = 0
    since: int = NO_REST
    seen: set = field(default_factory=set)  # contexts of the current generation
    seen_old: set = field(default_factory=set)  # contexts of the previous generation


def widen(x: float, lo: float, hi: float, width: float, limited: bool, growth: float) -> tuple[float, float]:
    """[lo, hi] widened to take x, by at most growth × width when `limited` (after warm-up)."""
    limit_hi = hi + growth * width if limited and width > 0 else math.inf
    limit_lo = lo - growth * width if limited and width > 0 else -math.inf
    if x > hi:
        return lo, min(x, limit_hi)
    if x < lo:
        return max(x, limit_lo), hi
    return lo, hi


def evidence_score(r: float) -> float:
    return 1.0 - 1.0 / (1.0 + r) if r >= 0.0 else 0.0


@dataclass
class Detector:
    """The detector of docs/stream.md, one reading at a time, state in a dict."""

    params: DetectorParams = field(default_factory=DetectorParams)
    series: dict[int, _Series] = field(default_factory=dict)

    def set_bounds(self, sid: int, low: float, high: float) -> None:
        state = self.series.setdefault(sid, _Series())
        state.low, state.high = low, high

    def set_params(self, sid: int, params: DetectorParams) -> None:
        self.series.setdefault(sid, _Series()).params = params

    def process(self, series_id, time, value) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, kind, flagged) per reading, in input order."""
        n = len(series_id)
        score, kind, flagged = np.full(n, np.nan), np.full(n, KIND_NONE, np.int8), np.zeros(n, bool)
        for i in time_order(series_id, time):
            score[i], kind[i], flagged[i] = self.one(int(series_id[i]), int(time[i]), float(value[i]))
        return score, kind, flagged

    def one(self, sid: int, t: int, x: float) -> tuple[float, int, bool]:
        s = self.series.setdefault(sid, _Series())
        p = s.params or self.params
        if not math.isfinite(x):
            return math.nan, KIND_NONE, False
        late = s.last_time is not None and t < s.last_time
        dt = 0.0
        gap = 0.0
        if not late and s.last_time is not None:
            dt = float(t - s.last_time)
            if s.n_interval >= p.gap_warmup and dt > s.interval > 0.0:
                gap = (dt / s.interval - 1.0) / (p.gap_factor - 1.0)
        if x < s.low or x > s.high:
            result = (1.0, KIND_OUT_OF_RANGE, True, False)
        else:
            result = self._value(s, p, x, late, gap)
        if not late:
            # a flag by the other criteria or a strong pattern evidence starts a rest period
            s.since = 0 if (result[2] or result[3]) else min(s.since + 1, NO_REST)
            if dt > 0.0:
                if s.n_interval >= p.gap_warmup:
                    dt = min(dt, p.gap_factor * s.interval)
                s.n_interval += 1
                s.interval += max(p.gap_alpha, 1.0 / s.n_interval) * (dt - s.interval)
            s.last_time = t
        return result[0], (result[1] if result[0] >= p.threshold else KIND_NONE), result[0] >= p.threshold

    def _value(self, s: _Series, p: DetectorParams, x: float, late: bool, gap: float) -> tuple[float, int]:
        warm = s.n >= p.warmup and s.n > 0
        std = max(math.sqrt(s.var), p.min_std)
        fast = x if s.n == 0 else s.fast + max(p.level_alpha, 1.0 / (s.n + 1)) * (x - s.fast)
        evidence = [(0.0, KIND_SPIKE)]
        if warm:
            if x != s.mean:
                evidence.append((abs(x - s.mean) / std / p.spike_z if std > 0 else math.inf, KIND_SPIKE))
            for lo, hi, tol in ((s.seen_lo, s.seen_hi, p.novelty_tol), (s.recent_lo, s.recent_hi, p.recent_tol)):
                span = hi - lo
                if span > 0 and x > hi:
                    evidence.append(((x - hi) / span / tol, KIND_SPIKE))
                if span > 0 and x < lo:
                    evidence.append(((lo - x) / span / tol, KIND_SPIKE))
            if fast != s.mean:
                scale = std * math.sqrt(p.level_alpha / (2.0 - p.level_alpha))
                evidence.append((abs(fast - s.mean) / scale / p.level_z if scale > 0 else math.inf, KIND_LEVEL_SHIFT))
        ev, kind = evidence[0]
        for e, k in evidence[1:]:  # the first largest wins (spike before level_shift on ties)
            if e > ev:
                ev, kind = e, k
        score = evidence_score(ev)
        if p.suppress > 0 and ev <= s.peak:
            score *= SUPPRESSED_SCALE
        repeats = s.run + 1 if (s.n > 0 and x == s.last_value) else 1
        if warm and evidence_score(gap) > score:  # nothing is flagged during the warm-up
            score, kind = evidence_score(gap), KIND_GAP
        if p.stuck_run > 0 and warm and not late and repeats >= p.stuck_run and score < 1.0:
            score, kind = 1.0, KIND_STUCK
        flagged = score >= CRITERION_MET  # met on its own: starts a rest period, keeps its kind
        pattern, strong = self._pattern(s, p, x, warm) if p.ctx_bins > 0 and not late else (0.0, False)
        if abs(x - s.mean) < p.ctx_z * std:  # a pattern counts only away from the mean
            pattern = 0.0
        if pattern > score:
            score, kind = pattern, (kind if flagged else KIND_PATTERN)
        if not late:  # learn
            d = x - s.mean
            if warm:
                d = min(max(d, -p.clip_z * std), p.clip_z * std)
            s.n += 1
            a = max(p.alpha, 1.0 / s.n)
            if s.n == 1:
                s.mean, s.var, s.seen_lo, s.seen_hi = x, 0.0, x, x
                s.recent_lo, s.recent_hi = x, x
            else:
                s.mean, s.var = s.mean + a * d, (1.0 - a) * (s.var + a * d * d)
                if not (math.isfinite(s.mean) and math.isfinite(s.var)):
                    s.mean, s.var, s.n = x, 0.0, 1
                s.seen_lo, s.seen_hi = widen(x, s.seen_lo, s.seen_hi, s.seen_hi - s.seen_lo, warm, p.novelty_growth)
                # the recent range decays towards the (new) mean, then widens like the seen range
                decay = 0.5 ** (1.0 / p.recent_halflife)
                s.recent_lo, s.recent_hi = widen(x, s.mean - (s.mean - s.recent_lo) * decay,
                                                 s.mean + (s.recent_hi - s.mean) * decay,
                                                 s.recent_hi - s.recent_lo, warm, p.novelty_growth)
            s.fast = fast
            if warm:
                s.peak = max(s.peak * (math.exp(-1.0 / p.suppress) if p.suppress > 0 else 0.0), ev)
            s.last_value, s.run = x, repeats
        return score, kind, flagged, strong

    @staticmethod
    def _pattern(s: _Series, p: DetectorParams, x: float, warm: bool) -> tuple[float, bool]:
        """(pattern score, strong): the share of x's contexts never seen; learns them."""
        s.ctx_lo, s.ctx_hi = min(s.ctx_lo, x), max(s.ctx_hi, x)
        f = (x - s.ctx_lo) / (s.ctx_hi - s.ctx_lo) * p.ctx_bins if s.ctx_hi > s.ctx_lo else 0.0
        b = p.ctx_bins - 1 if f >= p.ctx_bins else (int(f) if f > 0.0 else 0)
        contexts = [tuple(s.bins[-k:]) + (b,) for k in range(1, p.ctx_order + 1) if len(s.bins) >= k]
        new = [c not in s.seen and c not in s.seen_old for c in contexts]
        s.seen.update(contexts)
        s.bins = (s.bins + [b])[-2:]
        s.ctx_n += 1
        if s.ctx_n >= p.ctx_memory:
            s.seen_old, s.seen, s.ctx_n = s.seen, set(), 0
        if not warm or not contexts:
            return 0.0, False
        raw = sum(new) / len(contexts)
        return (raw if s.since >= p.ctx_rest else 0.0), raw >= p.ctx_threshold


@dataclass
class NaiveRule:
    """A threshold rule of stream/_rules.py, one reading at a time."""

    rule_id: int
    series_id: int
    on: float
    off: float
    hold_us: int
    above: bool = True
    pending: int | None = None
    active: bool = False
    last: int | None = None

    def one(self, t: int, x: float) -> bool | None:
        """True when this reading opens an episode, False when it clears one, else None."""
        if (self.last is not None and t < self.last) or not math.isfinite(x):
            return None
        self.last = t
        beyond_on = x > self.on if self.above else x < self.on
        back = x < self.off if self.above else x > self.off
        if self.active:
            if back:
                self.active, self.pending = False, None
                return False
            return None
        if not beyond_on:
            self.pending = None
            return None
        self.pending = t if self.pending is None else self.pending
        if t - self.pending >= self.hold_us:
            self.active = True
            return True
        return None
