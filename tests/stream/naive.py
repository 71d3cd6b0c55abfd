"""Slow, obviously correct twins of the stream kernels (pure Python over lists, like stumpy's naive.py).

Nothing here is fast or clever: readings are grouped with dicts, sorted with ``sorted`` on
explicit keys, and every rule of the detector is written out once, reading by reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stream._constants import (
    KIND_NONE,
    KIND_OUT_OF_RANGE,
    KIND_SPIKE,
    KIND_STUCK,
    US_PER_S,
)
from stream._detector import DetectorParams

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


@dataclass
class Detector:
    """The detector of docs/stream.md, one reading at a time, state in a dict."""

    params: DetectorParams = field(default_factory=DetectorParams)
    series: dict[int, _Series] = field(default_factory=dict)

    def set_bounds(self, sid: int, low: float, high: float) -> None:
        state = self.series.setdefault(sid, _Series())
        state.low, state.high = low, high

    def process(self, series_id, time, value) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(score, kind, flagged) per reading, in input order."""
        n = len(series_id)
        score, kind, flagged = np.full(n, np.nan), np.full(n, KIND_NONE, np.int8), np.zeros(n, bool)
        for i in time_order(series_id, time):
            score[i], kind[i], flagged[i] = self.one(int(series_id[i]), int(time[i]), float(value[i]))
        return score, kind, flagged

    def one(self, sid: int, t: int, x: float) -> tuple[float, int, bool]:
        p, s = self.params, self.series.setdefault(sid, _Series())
        if not math.isfinite(x):
            return math.nan, KIND_NONE, False
        late = s.last_time is not None and t < s.last_time
        if x < s.low or x > s.high:
            if not late:
                s.last_time = t
            return 1.0, KIND_OUT_OF_RANGE, True

        std = max(math.sqrt(s.var), p.min_std)
        warm = s.n >= p.warmup and s.n > 0
        spike = 0.0
        if warm:
            if x == s.mean:
                z = 0.0
            elif std == 0.0:
                z = math.inf
            else:
                z = abs(x - s.mean) / std
            spike = 1.0 - math.exp(-((z / p.z_scale) ** 2))
        repeats = s.run + 1 if (s.n > 0 and x == s.last_value) else 1
        stuck = p.stuck_run > 0 and not late and repeats >= p.stuck_run
        if stuck and spike < 1.0:
            result = (1.0, KIND_STUCK, True)
        else:
            result = (spike, KIND_SPIKE if spike >= p.threshold else KIND_NONE, spike >= p.threshold)

        if not late:  # learn
            d = x - s.mean
            if warm:
                d = min(max(d, -p.clip_z * std), p.clip_z * std)
            s.n += 1
            a = max(p.alpha, 1.0 / s.n)
            if s.n == 1:
                s.mean, s.var = x, 0.0
            else:
                s.mean, s.var = s.mean + a * d, (1.0 - a) * (s.var + a * d * d)
                if not (math.isfinite(s.mean) and math.isfinite(s.var)):
                    s.mean, s.var, s.n = x, 0.0, 1
            s.last_value, s.run, s.last_time = x, repeats, t
        return result
