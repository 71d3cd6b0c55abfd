"""What every decoded pack must satisfy before any of it reaches SQL, whatever the door.

The decoders refuse what a format cannot express; this module refuses what the
platform cannot store or should not accept from one pack:

- times outside the accepted window (default 1970-01-01 to ingest's clock + 1 day):
  dead letter `time_out_of_range`. The window keeps times inside what int64
  microseconds, PostgreSQL timestamptz and Python datetimes all hold;
- more distinct UTC days than `max_days_per_pack`: dead letter `too_many_days`
  (every day is a partition or chunk to create, with its locks);
- names and units the schema cannot hold (length, NUL, unpaired surrogates): dead
  letter `bad_name` / `bad_unit` (SenML packs are refused earlier by the decoder;
  this covers LPP and network-server uplinks too).

Checks run on the pack's numpy columns; strings are checked once per distinct value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ingest.decode import DecodedPack, dead_letter
from protocol.senml import NAME_PART_MAX_CHARS, UNIT_MAX_CHARS, text_problem
from storage.packs import DeadLetter

__all__ = ["PackLimits", "check_pack"]

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class PackLimits:
    """The accepted time window and the bound on the days one pack may span."""

    time_min_s: float = 0.0             # earliest reading time, Unix seconds (1970-01-01)
    time_ahead_s: float = DAY_S         # latest: ingest's clock plus this
    max_days_per_pack: int = 31

    def window_us(self, now_s: float | None = None) -> tuple[int, int]:
        now_s = time.time() if now_s is None else now_s
        return int(self.time_min_s * 1e6), int((now_s + self.time_ahead_s) * 1e6)


def check_pack(pack: DecodedPack, limits: PackLimits, window_us: tuple[int, int]) -> DeadLetter | None:
    """The dead letter `pack` deserves, or None when every field fits."""
    t = pack.time_us
    low, high = window_us
    if len(t):
        bad = (t < low) | (t > high)
        if bad.any():
            i = int(np.argmax(bad))
            return dead_letter(
                pack.message, "time_out_of_range",
                f"reading {i} ({pack.names[i]}): time {_seconds(pack, i)} s is outside the accepted window "
                f"[{low / 1e6:.0f}, {high / 1e6:.0f}] s", pack.device, boot_id=pack.boot_id, seq=pack.seq)
        days = np.unique(np.floor_divide(t, DAY_S * 1_000_000))
        if len(days) > limits.max_days_per_pack:
            return dead_letter(
                pack.message, "too_many_days",
                f"the readings span {len(days)} distinct UTC days; a pack may span at most "
                f"{limits.max_days_per_pack}", pack.device, boot_id=pack.boot_id, seq=pack.seq)
    for name in set(pack.names):
        device, _, quantity = name.partition("/")
        problem = text_problem(device, NAME_PART_MAX_CHARS) or text_problem(quantity, NAME_PART_MAX_CHARS)
        if problem is not None or not device or not quantity:
            return dead_letter(pack.message, "bad_name", f"name {name[:80]!r} {problem or 'is not device/quantity'}",
                               pack.device, boot_id=pack.boot_id, seq=pack.seq)
    for unit in set(pack.units):
        problem = None if unit is None else text_problem(unit, UNIT_MAX_CHARS)
        if problem is not None:
            return dead_letter(pack.message, "bad_unit", f"unit {unit[:40]!r} {problem}", pack.device,
                               boot_id=pack.boot_id, seq=pack.seq)
    return None


def _seconds(pack: DecodedPack, i: int) -> str:
    return f"{pack.time_us[i] / 1e6:.6g}"
