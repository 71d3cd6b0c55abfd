"""Sources: threads that read lines from serial ports and hand readings to the agent.

Each source owns one port, opened with pyserial (``serial.serial_for_url``), read
with a short timeout and split into lines. A line is parsed with the protocol codec;
a bad line is counted by its reason and never published. Readings are stamped at
the edge in UTC (``time.time()``) when their line is read and put into the agent's
bounded reading queue as a tuple of SenML :class:`~protocol.senml.Record`.

Stamps are strictly increasing per port at microsecond resolution: lines read in
one chunk get the read time plus 1 µs, 2 µs, ..., so the order of a sensor's lines
survives into the database even when several arrive at once.

A port that does not exist yet (the simulator's symlink), disappears (USB unplugged,
simulator restarted) or fails is closed and reopened with exponential backoff; the
agent keeps running and counts the loss (``port_losses`` in the status). When the reading queue is full for more than
``put_timeout_s`` the line's readings are dropped and counted (``queue_full``):
blocking longer would only move the loss into the kernel's tty buffer.

Reasons counted besides the codecs' own (``garbage``, ``truncated``,
``bad_checksum``, ``bad_field``, LPP and radio reasons): ``overlong`` (no newline
within 1 KiB), ``not_allowed`` (sensor not in the port's allow-list),
``unknown_node`` (radio address not in ``[lora.nodes]``).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import serial

from edge.config import LoraSourceConfig, SerialSourceConfig
from protocol.errors import ProtocolError
from protocol.lora_uart import parse_radio_line
from protocol.lpp import decode_lpp
from protocol.quantities import QUANTITIES
from protocol.senml import Record
from protocol.serial_line import parse_line

__all__ = ["LoraSource", "SerialSource", "Source", "SourceStats"]

log = logging.getLogger("edge.sources")

MAX_LINE = 1024


class SourceStats:
    """Counters shared by all sources (thread-safe); read by the agent for its status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bad: Counter[str] = Counter()
        self.lines = 0
        self.readings = 0
        self.dropped_readings = 0
        self.states: dict[str, str] = {}
        self._losses: Counter[str] = Counter()

    def bad(self, reason: str) -> None:
        with self._lock:
            self._bad[reason] += 1

    def good(self, readings: int) -> None:
        with self._lock:
            self.lines += 1
            self.readings += readings

    def dropped(self, readings: int) -> None:
        with self._lock:
            self.dropped_readings += readings

    def lost(self, path: str) -> None:
        """An open port failed or disappeared."""
        with self._lock:
            self._losses[path] += 1

    def set_state(self, path: str, state: str) -> None:
        with self._lock:
            self.states[path] = state

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {
                "bad_lines": dict(self._bad),
                "lines_read": self.lines,
                "readings_read": self.readings,
                "readings_dropped": self.dropped_readings,
                "sources": dict(self.states),
                "port_losses": dict(self._losses),
            }


class Source(threading.Thread):
    """Reads one port line by line; subclasses turn a line into records."""

    kind = "source"

    def __init__(
        self,
        path: str,
        baud: int,
        out: queue.Queue[tuple[Record, ...]],
        stats: SourceStats,
        *,
        clock: Callable[[], float] = time.time,
        read_timeout_s: float = 0.2,
        backoff_max_s: float = 5.0,
        put_timeout_s: float = 1.0,
    ) -> None:
        super().__init__(name=f"{self.kind}:{path}", daemon=True)
        self.path = path
        self.baud = baud
        self._out = out
        self._stats = stats
        self._clock = clock
        self._read_timeout_s = read_timeout_s
        self._backoff_max_s = backoff_max_s
        self._put_timeout_s = put_timeout_s
        self._stop_event = threading.Event()
        self._rng = random.Random()
        self._last_us = 0  # the last stamp given on this port (UTC microseconds)
        stats.set_state(path, "closed")

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        delay = 0.1
        while not self._stop_event.is_set():
            port = self._open()
            if port is None:
                self._stop_event.wait(delay * self._rng.uniform(0.8, 1.2))
                delay = min(delay * 2.0, self._backoff_max_s)
                continue
            delay = 0.1
            try:
                if not self._read(port):
                    self._stats.lost(self.path)
            finally:
                try:
                    port.close()
                except (OSError, serial.SerialException):
                    pass
                self._stats.set_state(self.path, "closed")

    def _open(self) -> serial.SerialBase | None:
        try:
            port = serial.serial_for_url(self.path, baudrate=self.baud, timeout=self._read_timeout_s)
        except (OSError, serial.SerialException, ValueError) as exc:
            if self._stats.states.get(self.path) != "waiting":
                log.warning("cannot open %s (%s); retrying with backoff", self.path, exc)
            self._stats.set_state(self.path, "waiting")
            return None
        log.info("opened %s at %d baud", self.path, self.baud)
        self._stats.set_state(self.path, "open")
        return port

    def _read(self, port: serial.SerialBase) -> bool:
        """Read lines until stopped (True) or until the port fails (False)."""
        buf = b""
        skipping = False  # inside an overlong line, until its newline
        while not self._stop_event.is_set():
            try:
                chunk = port.read(1)
                if chunk and port.in_waiting:
                    chunk += port.read(port.in_waiting)
            except (OSError, serial.SerialException) as exc:
                log.warning("%s failed (%s); reopening", self.path, exc)
                return False
            if not chunk:
                continue
            now_us = int(self._clock() * 1_000_000)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if skipping:
                    skipping = False
                    continue
                if len(line) > MAX_LINE:
                    self._stats.bad("overlong")
                elif line.strip(b"\r"):
                    now_us = max(now_us, self._last_us + 1)
                    self._last_us = now_us
                    self._line(line + b"\n", now_us / 1_000_000)
            if len(buf) > MAX_LINE:
                self._stats.bad("overlong")
                buf, skipping = b"", True
        return True

    def _line(self, line: bytes, now: float) -> None:
        try:
            records = self.records(line, now)
        except ProtocolError as exc:
            self._stats.bad(exc.reason)
            log.debug("%s: bad line (%s): %s", self.path, exc.reason, exc)
            return
        if not records:
            return
        self._stats.good(len(records))
        try:
            self._out.put(records, timeout=self._put_timeout_s)
        except queue.Full:
            self._stats.dropped(len(records))
            log.warning("reading queue full; dropped %d readings from %s", len(records), self.path)

    def records(self, line: bytes, now: float) -> tuple[Record, ...]:
        raise NotImplementedError


def _unit(quantity: str, fallback: str | None = None) -> str | None:
    q = QUANTITIES.get(quantity)
    return q.unit if q is not None else fallback


class SerialSource(Source):
    """Citylab serial lines (``$CLAB,...*HH``) from sensors wired to one port."""

    kind = "serial"

    def __init__(
        self,
        config: SerialSourceConfig,
        out: queue.Queue[tuple[Record, ...]],
        stats: SourceStats,
        **options: float,
    ) -> None:
        super().__init__(config.path, config.baud, out, stats, **options)  # type: ignore[arg-type]
        self._allowed = config.sensors

    def records(self, line: bytes, now: float) -> tuple[Record, ...]:
        parsed = parse_line(line)
        if self._allowed is not None and parsed.sensor_id not in self._allowed:
            self._stats.bad("not_allowed")
            return ()
        sid = parsed.sensor_id
        return tuple(Record(f"{sid}/{q}", v, now, _unit(q)) for q, v in parsed.fields)


class LoraSource(Source):
    """``+RCV`` lines of a UART LoRa module; LPP frames become the node's readings."""

    kind = "lora"

    def __init__(
        self,
        config: LoraSourceConfig,
        out: queue.Queue[tuple[Record, ...]],
        stats: SourceStats,
        **options: float,
    ) -> None:
        super().__init__(config.path, config.baud, out, stats, **options)  # type: ignore[arg-type]
        self._nodes = config.node_map()
        self._channels = config.channel_map()

    def records(self, line: bytes, now: float) -> tuple[Record, ...]:
        frame = parse_radio_line(line)
        if frame is None:  # +READY, +OK, +ERR=...
            return ()
        device = self._nodes.get(frame.address)
        if device is None:
            self._stats.bad("unknown_node")
            return ()
        out = []
        for v in decode_lpp(frame.payload):
            quantity = self._channels.get(v.channel, v.kind)
            out.append(Record(f"{device}/{quantity}", v.value, now, _unit(quantity, v.unit)))
        return tuple(out)
