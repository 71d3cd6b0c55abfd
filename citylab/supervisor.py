"""Everything `citylab up` starts: started together, restarted when it dies, stopped together.

A component is a command (ingest, the API, the demo's simulators and edge agents) or
an embedded server (PostgreSQL, Mosquitto), which restarts on its own port and data
directory. When a component dies the supervisor logs it, waits (exponential backoff)
and starts it again. Restarts are budgeted over a sliding window (`RestartPolicy`):
when a component has used its budget it waits until its oldest restart leaves the
window, then tries again. It never gives up for good, and never restarts in a tight
loop.

Each command runs in its own process group and gets SIGTERM from the kernel if the
supervisor dies (parent-death signal), so Ctrl-C, SIGTERM or even SIGKILL of
`citylab up` leaves no process behind. The supervisor writes what it sees
(`Supervisor.snapshot()`) to a state file, which `/metrics`, `/health` and
`citylab status` read.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["STATE_FILE", "Child", "Component", "RestartPolicy", "Server", "Supervised", "Supervisor", "read_snapshot"]

logger = logging.getLogger("citylab.supervisor")

STATE_FILE = "supervisor.json"  # under the lab home

_PR_SET_PDEATHSIG = 1


def _own_group_and_death_signal() -> None:
    os.setpgid(0, 0)
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Backoff doubles from `backoff_initial_s` up to `backoff_max_s` with each restart
    inside the window; at most `budget` restarts per `window_s` seconds."""

    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    budget: int = 5
    window_s: float = 300.0

    def backoff(self, recent: int) -> float:
        return min(self.backoff_initial_s * 2 ** recent, self.backoff_max_s)


class Component(Protocol):
    """Something the supervisor can start, see die, and stop."""

    name: str

    def spawn(self) -> subprocess.Popen: ...

    def terminate(self, timeout: float) -> None: ...


@dataclass
class Child:
    """A command, its environment and its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None
    process: subprocess.Popen | None = None

    def spawn(self) -> subprocess.Popen:
        out = None
        if self.log_path:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            out = os.fdopen(fd, "ab")
        try:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT if out else None, preexec_fn=_own_group_and_death_signal,
            )
        finally:
            if out:
                out.close()
        return self.process

    def terminate(self, timeout: float) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
        _signal_group(proc, signal.SIGKILL)  # anything the child left in its group goes too


class _Restartable(Protocol):
    process: subprocess.Popen | None

    def start(self) -> None: ...

    def stop(self, *, timeout: float) -> None: ...


@dataclass
class Server:
    """An embedded server (citylab.embedded): restarts on its own port and files."""

    name: str
    server: _Restartable

    def spawn(self) -> subprocess.Popen:
        self.server.start()
        assert self.server.process is not None
        return self.server.process

    def terminate(self, timeout: float) -> None:
        self.server.stop(timeout=timeout)


@dataclass
class Supervised:
    component: Component
    process: subprocess.Popen | None = None
    restarts: int = 0                                   # over the lab's lifetime (a counter)
    recent: deque[float] = field(default_factory=deque)  # restart times inside the window
    retry_at: float | None = None                       # set while it is down
    exhausted_logged: bool = False

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, *, log_dir: Path | None = None, policy: RestartPolicy | None = None,
                 state_path: Path | None = None) -> None:
        self.log_dir = log_dir
        self.policy = policy or RestartPolicy()
        self.state_path = state_path
        self.supervised: list[Supervised] = []

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Supervised:
        """Start a command and supervise it."""
        child = Child(name=name, argv=list(argv), env={**os.environ, **(env or {})},
                      log_path=(self.log_dir / f"{name}.log") if self.log_dir else None)
        return self.adopt(child)

    def adopt(self, component: Component, *, running: subprocess.Popen | None = None) -> Supervised:
        """Supervise `component`; `running` is its process when it was started already."""
        entry = Supervised(component, process=running or component.spawn())
        logger.debug("started %s (pid %d)", entry.name, entry.process.pid)
        self.supervised.append(entry)
        self._write_state()
        return entry

    def poll(self) -> None:
        """Notice deaths and restart, with backoff, within the budget of the sliding window."""
        changed = False
        for entry in self.supervised:
            if entry.up:
                continue
            now = time.monotonic()
            while entry.recent and entry.recent[0] <= now - self.policy.window_s:
                entry.recent.popleft()
            if entry.retry_at is None:
                code = entry.process.returncode if entry.process is not None else None
                entry.retry_at = self._next_attempt(entry, now)
                logger.warning("%s exited with code %s; restarting in %.1f s%s", entry.name, code,
                               entry.retry_at - now, self._where(entry))
                changed = True
            if now < entry.retry_at:
                continue
            if len(entry.recent) >= self.policy.budget:
                entry.retry_at = self._next_attempt(entry, now)
                continue
            entry.recent.append(now)
            entry.restarts += 1
            entry.exhausted_logged = False
            try:
                entry.process = entry.component.spawn()
            except Exception as exc:  # noqa: BLE001 - any failure to start is retried the same way
                entry.process = None
                entry.retry_at = self._next_attempt(entry, time.monotonic())
                logger.error("%s did not start (restart %d): %s; next attempt in %.1f s", entry.name,
                             entry.restarts, exc, entry.retry_at - time.monotonic())
            else:
                entry.retry_at = None
                logger.warning("%s restarted (pid %d; restart %d, %d in the last %.0f s)", entry.name,
                               entry.process.pid, entry.restarts, len(entry.recent), self.policy.window_s)
            changed = True
        if changed:
            self._write_state()

    def _next_attempt(self, entry: Supervised, now: float) -> float:
        policy = self.policy
        at = now + policy.backoff(len(entry.recent))
        if len(entry.recent) >= policy.budget:
            # the budget is spent: wait until the oldest restart leaves the window
            at = max(at, entry.recent[0] + policy.window_s)
            if not entry.exhausted_logged:
                entry.exhausted_logged = True
                logger.error("%s: restart budget spent (%d restarts in %.0f s); next attempt in %.0f s%s",
                             entry.name, len(entry.recent), policy.window_s, at - now, self._where(entry))
        return at

    @staticmethod
    def _where(entry: Supervised) -> str:
        log = getattr(entry.component, "log_path", None)
        return f"; see {log}" if log else ""

    def snapshot(self) -> dict[str, dict]:
        """Per component: up, pid, restarts over the lab's lifetime and inside the window."""
        return {
            e.name: {"up": e.up, "pid": e.process.pid if e.up else None, "restarts": e.restarts,
                     "restarts_in_window": len(e.recent), "window_s": self.policy.window_s}
            for e in self.supervised
        }

    def _write_state(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"written_at": time.time(), "components": self.snapshot()}, out)
        os.replace(tmp, self.state_path)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop every component, newest first (commands get SIGTERM, then SIGKILL after `timeout`)."""
        for entry in reversed(self.supervised):  # all commands at once: they stop in parallel
            if isinstance(entry.component, Child) and entry.up:
                _signal_group(entry.process, signal.SIGTERM)
        for entry in reversed(self.supervised):
            entry.component.terminate(timeout)
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)


def read_snapshot(path: Path) -> dict[str, dict] | None:
    """The components a running supervisor last wrote to `path`; None without one."""
    try:
        return json.loads(path.read_text())["components"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
