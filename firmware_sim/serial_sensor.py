"""A sensor that prints citylab serial lines on a pseudo-terminal, like a UART device.

Example (seeded; needs a Linux pty)::

    >>> s = SerialSensor("air-001", kind="air", seed=1)
    >>> s.tick(1_700_000_000.0)            # one line now; returns the period
    1.0
    >>> s.seq
    1
    >>> s.close()
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

from firmware_sim._loop import TickLoop
from firmware_sim._pty import PseudoTerminal
from firmware_sim.faults import Faults, LineFault
from firmware_sim.ledger import Ledger
from firmware_sim.signals import KIND_QUANTITIES, make_model
from protocol.serial_line import format_line, parse_line

__all__ = ["SerialSensor"]

log = logging.getLogger("firmware_sim.serial")


class SerialSensor:
    """One simulated serial sensor on its own pty.

    ``tick(now)`` emits one line (``$CLAB,<sensor_id>,<seq>,<q>=<v>,...*HH``) and
    returns the period; :meth:`start` runs it every ``period_s`` in a thread, while a
    :class:`~firmware_sim.district.District` drives many sensors from one thread.
    ``seq`` counts lines since the last (simulated) boot; lines lost to a dropout or
    mangled by a fault still consume a ``seq``, so a receiver sees the gap.
    """

    def __init__(
        self,
        sensor_id: str,
        *,
        kind: str = "air",
        period_s: float = 1.0,
        seed: int = 0,
        link: Path | str | None = None,
        baud: int = 115200,
        ledger: Ledger | None = None,
        fault_rate: float = 0.0,
    ) -> None:
        self.name = self.sensor_id = sensor_id
        self.kind = kind
        self.period_s = period_s
        self.seed = seed
        self.fault_rate = fault_rate
        self.quantities = KIND_QUANTITIES.get(kind, ())
        self._rng = random.Random(f"{seed}:{sensor_id}")
        self._model = make_model(kind, self._rng)
        self.faults = Faults()
        self.ledger = ledger
        self.boot = 0
        self.seq = 0
        self.lines_written = 0
        self.lines_lost = 0  # could not be written: nobody reading and the pty buffer full
        self._pending = b""
        self._pending_record: tuple[int, int, tuple[tuple[str, float], ...]] | None = None
        self.pty = PseudoTerminal(link=link, baud=baud)
        self._link = link
        self.plugged = True
        self._lock = threading.Lock()  # tick() against unplug()/replug() from other threads
        self._loop: TickLoop | None = None

    @property
    def path(self) -> str:
        """The path a reader opens (the stable link when one was asked for)."""
        return self.pty.path

    @property
    def baud(self) -> int:
        return self.pty.baud

    # -- running --------------------------------------------------------------
    def start(self) -> None:
        """Emit a line every ``period_s`` in a background thread until :meth:`stop`."""
        if self._loop is None:
            self._loop = TickLoop([self], name=f"sensor-{self.sensor_id}")
            self._loop.start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def close(self) -> None:
        self.stop()
        with self._lock:
            self.pty.close()

    def unplug(self, now: float | None = None) -> None:
        """Pull the USB cable: the port (and its link) disappears and the device loses power.

        A reader's next read fails; nothing is emitted until :meth:`replug`.
        """
        with self._lock:
            if not self.plugged:
                return
            self.plugged = False
            self.pty.close()
            self._pending, self._pending_record = b"", None
            self._fault("unplug", time.time() if now is None else now)

    def replug(self, now: float | None = None) -> None:
        """Plug it back: a new port appears at the same link and the device boots again."""
        with self._lock:
            if self.plugged:
                return
            self.pty = PseudoTerminal(link=self._link, baud=self.pty.baud)
            self.plugged = True
            self.boot += 1
            self.seq = 0
            self._fault("reboot", time.time() if now is None else now)

    def __enter__(self) -> SerialSensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one step ---------------------------------------------------------------
    def tick(self, now: float) -> float:
        with self._lock:
            if not self.plugged:
                return self.period_s
            return self._tick(now)

    def _tick(self, now: float) -> float:
        self.pty.drain_input()
        self.faults.arm_random(self._rng, self.quantities, rate=self.fault_rate)
        if self.faults.take_reboot():
            self.boot += 1
            self.seq = 0
            self._pending, self._pending_record = b"", None  # the UART FIFO dies with the MCU
            self._fault("reboot", now)
            log.info("%s rebooted (boot %d)", self.sensor_id, self.boot)
            return self.period_s  # silent while booting
        if not self._flush_pending(now):
            self.lines_lost += 1
            self.seq += 1
            return self.period_s
        if self.faults.take_new_skew():
            self._fault("skew", now)
        values = self.faults.apply(self._model.sample(self.faults.clock(now)))
        line = format_line(self.sensor_id, self.seq, values)
        fault = self.faults.take_line_fault()
        if fault is LineFault.DROPOUT:
            self._fault(fault.value, now)
        elif fault is LineFault.GARBAGE:
            self._write(self._garbage(len(line)), None, now)
            self._fault(fault.value, now)
        elif fault is LineFault.TRUNCATE:
            cut = self._rng.randint(5, max(6, len(line) - 6))
            self._write(line[:cut] + b"\r\n", None, now)
            self._fault(fault.value, now)
        else:
            # record what a receiver decodes, not the float we formatted
            decoded = parse_line(line).fields
            self._write(line, (self.boot, self.seq, decoded), now)
        self.seq += 1
        return self.faults.period(self.period_s)

    def _garbage(self, n: int) -> bytes:
        junk = bytes(self._rng.randrange(256) for _ in range(n))
        return junk.replace(b"\n", b"?").replace(b"$", b"#") + b"\r\n"

    def _write(
        self, data: bytes, record: tuple[int, int, tuple[tuple[str, float], ...]] | None, now: float
    ) -> None:
        n = self.pty.write(data)
        if n == len(data):
            self.lines_written += 1
            self._record(record, now)
        elif n == 0:
            self.lines_lost += 1
        else:  # the rest waits in the "UART FIFO" until the next tick
            self._pending, self._pending_record = data[n:], record

    def _flush_pending(self, now: float) -> bool:
        """Write the rest of a partly written line; False while it still does not fit."""
        if not self._pending:
            return True
        n = self.pty.write(self._pending)
        self._pending = self._pending[n:]
        if self._pending:
            return False
        self.lines_written += 1
        self._record(self._pending_record, now)
        self._pending_record = None
        return True

    def _record(self, record: tuple[int, int, tuple[tuple[str, float], ...]] | None, now: float) -> None:
        if record is not None and self.ledger is not None:
            boot, seq, fields = record
            self.ledger.record(
                self.sensor_id, boot=boot, seq=seq, values=fields, emitted_at=now, transport="serial"
            )

    def _fault(self, fault: str, now: float) -> None:
        if self.ledger is not None:
            self.ledger.record_fault(self.sensor_id, boot=self.boot, seq=self.seq, fault=fault, emitted_at=now)
