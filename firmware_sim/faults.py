"""Fault injection: what goes wrong with real sensors, on demand.

A :class:`Faults` object belongs to one simulated device. Tests (or the district's
random fault mode) arm faults on it from any thread; the device's emit step asks it
to transform each sample and whether the line goes out intact. Faults:

``spike``      the next ``count`` samples of a quantity are multiplied by ``factor``
``stuck``      a quantity repeats its current value for ``count`` samples
``drift``      a quantity gains ``per_sample`` more offset at every sample (until cleared)
``dropout``    the next ``count`` samples are not sent at all
``garbage``    the next ``count`` lines are replaced by random bytes
``truncate``   the next ``count`` lines are cut short (checksum lost)
``reboot``     the device restarts: its sequence number goes back to 0, boot + 1
``skew``       the device's clock is off by ``offset_s`` and runs ``rate`` too fast
               (``rate=1e-3`` gains 1 ms per second): its signal is sampled at its own
               wrong time and its period shrinks by ``1 + rate``. Serial lines and LPP
               frames carry no time, which is why the edge stamps readings itself;
               the ledger keeps the true UTC emission time.

Unplugging a serial sensor is not a fault of the stream but of the port:
:meth:`firmware_sim.SerialSensor.unplug` / ``replug``.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Faults", "LineFault"]


class LineFault(Enum):
    """What happens to one outgoing line."""

    NONE = "none"
    DROPOUT = "dropout"
    GARBAGE = "garbage"
    TRUNCATE = "truncate"


@dataclass(slots=True)
class _Spike:
    factor: float
    remaining: int


@dataclass(slots=True)
class _Stuck:
    remaining: int
    value: float | None = None


@dataclass(slots=True)
class Faults:
    """Armed faults of one device; thread-safe, consumed by the device's emit step."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _spikes: dict[str, _Spike] = field(default_factory=dict)
    _stuck: dict[str, _Stuck] = field(default_factory=dict)
    _drift_step: dict[str, float] = field(default_factory=dict)
    _drift_offset: dict[str, float] = field(default_factory=dict)
    _line_faults: list[LineFault] = field(default_factory=list)
    _reboot: bool = False
    _skew_offset_s: float = 0.0
    _skew_rate: float = 0.0
    _skew_since: float | None = None  # true time the skew was armed (None: not yet seen)
    _skew_new: bool = False

    # -- arming (any thread) -------------------------------------------------
    def spike(self, quantity: str, *, factor: float = 10.0, count: int = 1) -> None:
        with self._lock:
            self._spikes[quantity] = _Spike(factor, count)

    def stuck(self, quantity: str, *, count: int = 10) -> None:
        with self._lock:
            self._stuck[quantity] = _Stuck(count)

    def drift(self, quantity: str, *, per_sample: float) -> None:
        with self._lock:
            self._drift_step[quantity] = per_sample
            self._drift_offset.setdefault(quantity, 0.0)

    def clear_drift(self, quantity: str) -> None:
        with self._lock:
            self._drift_step.pop(quantity, None)
            self._drift_offset.pop(quantity, None)

    def dropout(self, *, count: int = 1) -> None:
        self._queue_line(LineFault.DROPOUT, count)

    def garbage(self, *, count: int = 1) -> None:
        self._queue_line(LineFault.GARBAGE, count)

    def truncate(self, *, count: int = 1) -> None:
        self._queue_line(LineFault.TRUNCATE, count)

    def reboot(self) -> None:
        with self._lock:
            self._reboot = True

    def skew(self, *, offset_s: float = 0.0, rate: float = 0.0) -> None:
        """Set the device clock off by ``offset_s`` plus ``rate`` s/s from now on."""
        if rate <= -1.0:
            raise ValueError(f"clock rate {rate} would stop or reverse time")
        with self._lock:
            self._skew_offset_s, self._skew_rate, self._skew_since = offset_s, rate, None
            self._skew_new = True

    def take_new_skew(self) -> bool:
        """True once after :meth:`skew` was armed (the device records the fault)."""
        with self._lock:
            new, self._skew_new = self._skew_new, False
            return new

    def clear_skew(self) -> None:
        with self._lock:
            self._skew_offset_s, self._skew_rate, self._skew_since = 0.0, 0.0, None

    @property
    def skewed(self) -> bool:
        return self._skew_offset_s != 0.0 or self._skew_rate != 0.0

    def clock(self, now: float) -> float:
        """The device's own reading of the true UTC time ``now``."""
        with self._lock:
            if self._skew_offset_s == 0.0 and self._skew_rate == 0.0:
                return now
            if self._skew_since is None:
                self._skew_since = now
            return now + self._skew_offset_s + self._skew_rate * (now - self._skew_since)

    def period(self, nominal_s: float) -> float:
        """The true length of a period of ``nominal_s`` on the device's clock."""
        return nominal_s / (1.0 + self._skew_rate)

    def _queue_line(self, fault: LineFault, count: int) -> None:
        with self._lock:
            self._line_faults.extend([fault] * count)

    # -- consuming (the device's emit step) -----------------------------------
    def take_reboot(self) -> bool:
        with self._lock:
            pending, self._reboot = self._reboot, False
            return pending

    def take_line_fault(self) -> LineFault:
        with self._lock:
            return self._line_faults.pop(0) if self._line_faults else LineFault.NONE

    def apply(self, sample: dict[str, float]) -> dict[str, float]:
        """Return ``sample`` with the armed value faults applied (consumes counts)."""
        out = dict(sample)
        with self._lock:
            for q, spike in list(self._spikes.items()):
                if q in out:
                    out[q] = round(out[q] * spike.factor, 4)
                    spike.remaining -= 1
                    if spike.remaining <= 0:
                        del self._spikes[q]
            for q, step in self._drift_step.items():
                if q in out:
                    self._drift_offset[q] += step
                    out[q] = round(out[q] + self._drift_offset[q], 4)
            for q, stuck in list(self._stuck.items()):
                if q in out:
                    if stuck.value is None:
                        stuck.value = out[q]
                    out[q] = stuck.value
                    stuck.remaining -= 1
                    if stuck.remaining <= 0:
                        del self._stuck[q]
        return out

    def arm_random(self, rng: random.Random, quantities: tuple[str, ...], *, rate: float) -> None:
        """With probability ``rate``, arm one random fault (the district's chaos mode)."""
        if rate <= 0.0 or rng.random() >= rate:
            return
        kind = rng.choice(("spike", "stuck", "dropout", "garbage", "truncate", "reboot", "skew"))
        q = rng.choice(quantities)
        if kind == "spike":
            self.spike(q, factor=rng.uniform(5.0, 20.0))
        elif kind == "stuck":
            self.stuck(q, count=rng.randint(3, 30))
        elif kind == "dropout":
            self.dropout(count=rng.randint(1, 5))
        elif kind == "garbage":
            self.garbage()
        elif kind == "truncate":
            self.truncate()
        elif kind == "skew":
            self.skew(offset_s=rng.uniform(-600.0, 600.0), rate=rng.uniform(-1e-3, 1e-3))
        else:
            self.reboot()
