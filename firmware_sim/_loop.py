"""One thread that fires many periodic devices at their due times (a tiny scheduler)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Protocol

__all__ = ["Periodic", "TickLoop"]

log = logging.getLogger("firmware_sim.loop")


class Periodic(Protocol):
    name: str

    def tick(self, now: float) -> float:
        """Do one step at ``now`` (UTC seconds); return the delay until the next one."""
        ...


class TickLoop:
    """Runs :meth:`Periodic.tick` of each device when due, in one thread.

    A device whose tick raises is logged and rescheduled one second later, so one
    broken device does not stop a district.
    """

    def __init__(self, devices: list[Periodic], *, name: str = "firmware-sim") -> None:
        self._devices = list(devices)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        order = itertools.count()
        start = time.monotonic()
        heap = [(start, next(order), d) for d in self._devices]
        heapq.heapify(heap)
        while heap and not self._stop.is_set():
            due, _, device = heap[0]
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            heapq.heappop(heap)
            try:
                step = device.tick(time.time())
            except Exception:
                log.exception("device %s failed; retrying in 1 s", device.name)
                step = 1.0
            # schedule from the due time, not from now, so periods do not creep;
            # after a stall, resume from now instead of firing a burst
            nxt = max(due + step, time.monotonic())
            heapq.heappush(heap, (nxt, next(order), device))
