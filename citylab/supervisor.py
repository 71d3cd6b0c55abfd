"""Child processes of `citylab up`: started together, restarted when they crash, stopped together.

Each child runs in its own process group and gets SIGTERM from the kernel if the
supervisor dies (parent-death signal), so Ctrl-C, SIGTERM or even SIGKILL of
`citylab up` leaves no process behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Child", "Supervisor"]

logger = logging.getLogger("citylab.supervisor")

_PR_SET_PDEATHSIG = 1


def _own_group_and_death_signal() -> None:
    os.setpgid(0, 0)
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_until: float = field(default=0.0, repr=False)


class Supervisor:
    def __init__(self, *, log_dir: Path | None = None, max_restarts: int = 5) -> None:
        self.log_dir = log_dir
        self.max_restarts = max_restarts
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Child:
        child = Child(
            name=name, argv=list(argv), env={**os.environ, **(env or {})},
            log_path=(self.log_dir / f"{name}.log") if self.log_dir else None,
        )
        self._spawn(child)
        self.children.append(child)
        return child

    def _spawn(self, child: Child) -> None:
        out = open(child.log_path, "ab") if child.log_path else None  # noqa: SIM115 - handed to the child
        try:
            child.process = subprocess.Popen(
                child.argv, env=child.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None,
                preexec_fn=_own_group_and_death_signal,
            )
        finally:
            if out:
                out.close()
        child.started_at = time.monotonic()
        logger.debug("started %s (pid %d): %s", child.name, child.process.pid, " ".join(child.argv))

    def poll(self) -> None:
        """Restart children that exited, with backoff, up to `max_restarts` each."""
        now = time.monotonic()
        for child in self.children:
            proc = child.process
            if proc is None or proc.poll() is None:
                continue
            if child.restarts >= self.max_restarts:
                continue
            if child.backoff_until == 0.0:
                child.backoff_until = now + min(2 ** child.restarts, 30)
                where = f"; see {child.log_path}" if child.log_path else ""
                logger.warning("%s exited with code %s; restarting%s", child.name, proc.returncode, where)
            elif now >= child.backoff_until:
                child.restarts += 1
                child.backoff_until = 0.0
                self._spawn(child)
                if child.restarts == self.max_restarts:
                    logger.error("%s restarted %d times; giving up after this one", child.name, child.restarts)

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM every child's group (newest first), then SIGKILL what is left after `timeout`."""
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            proc = child.process
            if proc is None:
                continue
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", child.name, timeout)
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            # anything the child left in its group goes too
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
