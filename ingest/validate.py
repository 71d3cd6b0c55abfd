"""What every decoded pack must satisfy before any of it reaches SQL, whatever the door.

The decoders refuse what a format cannot express; this module refuses what the
platform cannot store or should not accept from one pack:

- times outside the accepted window (default 1970-01-01 to ingest's clock + 1 day):
  dead letter `time_out_of_range`. The window keeps times inside what int64
  microseconds, PostgreSQL timestamptz and Python datetimes all hold;
- more distinct UTC days than `max_days_per_pack`: dead letter `too_many_days`
  (every day is a partition or chunk to create, with its locks); and a batch whose
  packs together span more than `max_days_per_batch` days is committed in pieces,
  so that no transaction needs the locks of more days than PostgreSQL's shared lock
  table holds;
- names and units the schema cannot hold (length, NUL, unpaired surrogates): dead
  letter `bad_name` / `bad_unit` (SenML packs are refused earlier by the decoder;
  this covers LPP and network-server uplinks too).

Checks run on the batch's concatenated numpy columns (per-pack minimum and maximum
time by `reduceat`; distinct days are counted only for a pack whose span could
exceed the bound); strings are checked once per distinct value.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ingest.decode import DecodedPack, dead_letter
from protocol.senml import NAME_PART_MAX_CHARS, UNIT_MAX_CHARS, text_problem
from storage.packs import DeadLetter

__all__ = ["PackLimits", "PackValidator", "batch_days", "check_pack"]

DAY_S = 86_400
_DAY_US = DAY_S * 1_000_000


@dataclass(frozen=True, slots=True)
class PackLimits:
    """The accepted time window and the bound on the days one pack may span."""

    time_min_s: float = 0.0             # earliest reading time, Unix seconds (1970-01-01)
    time_ahead_s: float = DAY_S         # latest: ingest's clock plus this
    max_days_per_pack: int = 31
    max_days_per_batch: int = 62        # a transaction touches at most this many days (split beyond)

    def window_us(self, now_s: float | None = None) -> tuple[int, int]:
        now_s = time.time() if now_s is None else now_s
        return int(self.time_min_s * 1e6), int((now_s + self.time_ahead_s) * 1e6)


def batch_days(time_us: np.ndarray) -> int:
    """Distinct UTC days of a batch's readings (a min/max span first: usually all are recent)."""
    if len(time_us) == 0:
        return 0
    first, last = int(time_us.min()) // _DAY_US, int(time_us.max()) // _DAY_US
    if last - first < 2:
        return last - first + 1
    return len(np.unique(time_us // _DAY_US))


class PackValidator:
    """Checks the packs of one batch together, on their concatenated columns.

    Text checks are remembered (a bounded set of names and units already found
    storable), so that a steady stream costs one set lookup per distinct name.
    """

    def __init__(self, limits: PackLimits, *, remember: int = 100_000) -> None:
        self.limits = limits
        self._remember = remember
        self._valid: set[str] = set()

    def check(self, packs: Sequence[DecodedPack], *, now_s: float | None = None) -> list[DeadLetter | None]:
        """For each pack, the dead letter it deserves, or None when every field fits."""
        out: list[DeadLetter | None] = [None] * len(packs)
        if not packs:
            return out
        low, high = self.limits.window_us(now_s)
        counts = np.fromiter((len(p) for p in packs), dtype=np.int64, count=len(packs))
        t = np.concatenate([p.time_us for p in packs])
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        filled = counts > 0
        first, last = np.zeros(len(packs), np.int64), np.zeros(len(packs), np.int64)
        if len(t):
            first[filled] = np.minimum.reduceat(t, starts[filled])
            last[filled] = np.maximum.reduceat(t, starts[filled])
        outside = filled & ((first < low) | (last > high))
        # a pack spanning at most max_days calendar days cannot hold more distinct days
        span = last // _DAY_US - first // _DAY_US + 1
        wide = filled & ~outside & (span > self.limits.max_days_per_pack)
        for i in np.flatnonzero(outside | wide).tolist():
            out[i] = self._time_letter(packs[i], (low, high))
        for i, pack in enumerate(packs):
            if out[i] is None and pack.typed:
                out[i] = self._typed_times(pack, (low, high))
            if out[i] is None:
                out[i] = self._texts(pack)
        return out

    def _typed_times(self, pack: DecodedPack, window_us: tuple[int, int]) -> DeadLetter | None:
        """String, boolean and data readings keep to the same time window as numbers."""
        low, high = window_us
        for i, reading in enumerate(pack.typed):
            if not low <= reading.time_us <= high:
                return _letter(pack, "time_out_of_range",
                               f"typed reading {i} ({reading.name}): time {reading.time_us / 1e6:.6g} s is outside "
                               f"the accepted window [{low / 1e6:.0f}, {high / 1e6:.0f}] s")
        return None

    def _time_letter(self, pack: DecodedPack, window_us: tuple[int, int]) -> DeadLetter | None:
        t = pack.time_us
        low, high = window_us
        bad = (t < low) | (t > high)
        if bad.any():
            i = int(np.argmax(bad))
            return _letter(pack, "time_out_of_range",
                           f"reading {i} ({pack.names[i]}): time {t[i] / 1e6:.6g} s is outside the accepted window "
                           f"[{low / 1e6:.0f}, {high / 1e6:.0f}] s")
        days = len(np.unique(t // _DAY_US))
        if days > self.limits.max_days_per_pack:
            return _letter(pack, "too_many_days", f"the readings span {days} distinct UTC days; a pack may span "
                                                  f"at most {self.limits.max_days_per_pack}")
        return None

    def _texts(self, pack: DecodedPack) -> DeadLetter | None:
        valid = self._valid
        for name in set(pack.names).union(t.name for t in pack.typed) - valid:
            device, _, quantity = name.partition("/")
            problem = text_problem(device, NAME_PART_MAX_CHARS) or text_problem(quantity, NAME_PART_MAX_CHARS)
            if problem is not None or not device or not quantity:
                return _letter(pack, "bad_name", f"name {name[:80]!r} {problem or 'is not device/quantity'}")
            self._learn(name)
        for unit in set(pack.units).union(t.unit for t in pack.typed) - valid:
            problem = None if unit is None else text_problem(unit, UNIT_MAX_CHARS)
            if problem is not None:
                return _letter(pack, "bad_unit", f"unit {unit[:40]!r} {problem}")
            self._learn(unit)
        return None

    def _learn(self, text: str | None) -> None:
        if len(self._valid) >= self._remember:
            self._valid.clear()
        self._valid.add(text)


def check_pack(pack: DecodedPack, limits: PackLimits, *, now_s: float | None = None) -> DeadLetter | None:
    """The dead letter one pack deserves, or None (`PackValidator` checks a whole batch at once)."""
    return PackValidator(limits).check([pack], now_s=now_s)[0]


def _letter(pack: DecodedPack, reason: str, detail: str) -> DeadLetter:
    return dead_letter(pack.message, reason, detail, pack.device, boot_id=pack.boot_id, seq=pack.seq)
