"""LoRa nodes sending Cayenne LPP frames, heard by one UART radio module on a pty.

The gateway's radio module (RYLR896 style) prints ``+READY`` when it powers up and
one ``+RCV=<addr>,<len>,<HEX>,<rssi>,<snr>`` line per frame it hears. Each
:class:`LoraNode` transmits every ``period_s`` (jittered, as duty-cycled nodes do)
an LPP frame with one item per channel of its :data:`DEFAULT_CHANNELS` map.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

from firmware_sim._loop import TickLoop
from firmware_sim._pty import PseudoTerminal
from firmware_sim.faults import Faults, LineFault
from firmware_sim.ledger import Ledger
from firmware_sim.signals import make_model
from protocol.lora_uart import RadioFrame, format_rcv
from protocol.lpp import decode_lpp, encode_lpp

__all__ = ["DEFAULT_CHANNELS", "LoraChannel", "LoraNode", "LoraRadioModule"]

log = logging.getLogger("firmware_sim.lora")


@dataclass(frozen=True, slots=True)
class LoraChannel:
    """One LPP channel of a node: the LPP kind on the air and the citylab quantity it carries."""

    channel: int
    kind: str
    quantity: str


DEFAULT_CHANNELS: tuple[LoraChannel, ...] = (
    LoraChannel(1, "temperature", "temperature"),
    LoraChannel(2, "humidity", "humidity"),
    LoraChannel(3, "barometric_pressure", "pressure"),
    LoraChannel(4, "analog_input", "pm2_5"),
    LoraChannel(5, "voltage", "battery_voltage"),
)
"""What every simulated node sends (the edge's ``[lora.channels]`` map mirrors it)."""


class LoraRadioModule:
    """The gateway's radio module: one pty on which every heard frame becomes a ``+RCV`` line."""

    def __init__(
        self,
        *,
        link: Path | str | None = None,
        baud: int = 115200,
        seed: int = 0,
        ledger: Ledger | None = None,
    ) -> None:
        self.name = "lora-radio"
        self.pty = PseudoTerminal(link=link, baud=baud)
        self.ledger = ledger
        self.nodes: list[LoraNode] = []
        self._rng = random.Random(f"{seed}:radio")
        self.lines_written = 0
        self.lines_lost = 0
        self._loop: TickLoop | None = None
        self._write_line(b"+READY\r\n")

    @property
    def path(self) -> str:
        return self.pty.path

    @property
    def baud(self) -> int:
        return self.pty.baud

    def add_node(self, node: LoraNode) -> LoraNode:
        node.module = self
        self.nodes.append(node)
        return node

    def receive(self, node: LoraNode, payload: bytes, *, now: float, record: tuple[int, int] | None) -> bool:
        """A frame from ``node`` reached the module: print its ``+RCV`` line.

        ``record`` is ``(boot, fcnt)`` to ledger the decoded values once written.
        """
        frame = RadioFrame(node.address, payload, rssi=node.rssi(), snr=node.snr())
        ok = self._write_line(format_rcv(frame))
        if ok and record is not None and self.ledger is not None:
            quantity_of = {c.channel: c.quantity for c in node.channels}
            values = [(quantity_of[v.channel], v.value) for v in decode_lpp(payload)]
            boot, fcnt = record
            self.ledger.record(
                node.device_id, boot=boot, seq=fcnt, values=values, emitted_at=now, transport="lora"
            )
        return ok

    def write_raw(self, data: bytes) -> bool:
        return self._write_line(data)

    def _write_line(self, data: bytes) -> bool:
        # A line that does not fit whole is lost whole: the module drops it rather
        # than leave half a line (nobody is reading the UART anyway).
        n = self.pty.write(data)
        if n == len(data):
            self.lines_written += 1
            return True
        self.lines_lost += 1
        if n:
            self.pty.write(b"\r\n")  # end the fragment; the reader discards it as garbage
        return False

    def start(self) -> None:
        if self._loop is None:
            self._loop = TickLoop(list(self.nodes), name="lora-radio")
            self._loop.start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def close(self) -> None:
        self.stop()
        self.pty.close()

    def __enter__(self) -> LoraRadioModule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoraNode:
    """A battery node: samples, encodes LPP, transmits every ``period_s`` ± ``jitter``.

    ``fcnt`` (the frame counter) plays the role of a serial sensor's ``seq`` and
    restarts at 0 on a reboot fault. Faults: value faults, ``dropout`` (the frame is
    not heard), ``garbage`` and ``truncate`` (a corrupted ``+RCV`` line), ``reboot``.
    """

    def __init__(
        self,
        address: int,
        device_id: str,
        *,
        seed: int = 0,
        period_s: float = 5.0,
        jitter: float = 0.2,
        channels: tuple[LoraChannel, ...] = DEFAULT_CHANNELS,
        fault_rate: float = 0.0,
    ) -> None:
        self.address = address
        self.name = self.device_id = device_id
        self.period_s = period_s
        self.jitter = jitter
        self.channels = channels
        self.fault_rate = fault_rate
        self._rng = random.Random(f"{seed}:{device_id}")
        self._model = make_model("node", self._rng)
        self._distance = self._rng.uniform(0.1, 1.0)  # decides the link quality
        self.faults = Faults()
        self.module: LoraRadioModule | None = None
        self.boot = 0
        self.fcnt = 0

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(c.quantity for c in self.channels)

    def rssi(self) -> int:
        return round(-40 - 80 * self._distance + self._rng.gauss(0.0, 3.0))

    def snr(self) -> float:
        return round(12.0 - 20.0 * self._distance + self._rng.gauss(0.0, 1.0), 1)

    def payload(self, now: float) -> bytes:
        sample = self.faults.apply(self._model.sample(self.faults.clock(now)))
        return encode_lpp((c.channel, c.kind, sample[c.quantity]) for c in self.channels)

    def tick(self, now: float) -> float:
        next_in = self.faults.period(self.period_s) * (1.0 + self._rng.uniform(-self.jitter, self.jitter))
        if self.module is None:
            return next_in
        self.faults.arm_random(self._rng, self.quantities, rate=self.fault_rate)
        if self.faults.take_reboot():
            self.boot += 1
            self.fcnt = 0
            self._fault("reboot", now)
            return next_in
        if self.faults.take_new_skew():
            self._fault("skew", now)
        payload = self.payload(now)
        fault = self.faults.take_line_fault()
        if fault is LineFault.NONE:
            self.module.receive(self, payload, now=now, record=(self.boot, self.fcnt))
        elif fault is LineFault.DROPOUT:
            self._fault(fault.value, now)
        else:
            line = format_rcv(RadioFrame(self.address, payload, self.rssi(), self.snr()))
            if fault is LineFault.GARBAGE:
                bad = bytes(self._rng.randrange(32, 127) for _ in range(len(line) - 2))
                line = bad.replace(b"+", b"#") + b"\r\n"
            else:
                line = line[: self._rng.randint(3, len(line) - 4)] + b"\r\n"
            self.module.write_raw(line)
            self._fault(fault.value, now)
        self.fcnt += 1
        return next_in

    def _fault(self, fault: str, now: float) -> None:
        if self.module is not None and self.module.ledger is not None:
            self.module.ledger.record_fault(
                self.device_id, boot=self.boot, seq=self.fcnt, fault=fault, emitted_at=now
            )
