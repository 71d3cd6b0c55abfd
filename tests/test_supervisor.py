"""The supervisor's restart policy, with real child processes: backoff, a budget over a
sliding window (never a budget over the lab's lifetime), a log line per restart, the state file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from citylab.supervisor import RestartPolicy, Supervisor, read_snapshot
from lab_probes import wait

CRASH = ["/bin/sh", "-c", "exit 3"]
LIVE = [sys.executable, "-c", "import time; time.sleep(60)"]


def _poll_until(supervisor: Supervisor, probe, timeout: float, what: str) -> None:
    """`probe()` true, the supervisor polled between the asks (it restarts children only when polled)."""
    wait(lambda: probe() or supervisor.poll(), timeout, what)


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(backoff_initial_s=1.0, backoff_max_s=30.0)
    assert [policy.backoff(n) for n in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_the_budget_is_per_window_and_the_supervisor_never_gives_up(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="citylab.supervisor")
    policy = RestartPolicy(backoff_initial_s=0.05, backoff_max_s=0.1, budget=3, window_s=2.0)
    supervisor = Supervisor(log_dir=tmp_path, policy=policy, state_path=tmp_path / "supervisor.json")
    crashing = supervisor.start("crashing", CRASH)
    steady = supervisor.start("steady", LIVE)
    try:
        _poll_until(supervisor, lambda: crashing.restarts == 3, 10, "three restarts")
        first = crashing.recent[0]
        # the budget is spent: no restart until the first of the three leaves the window
        _poll_until(supervisor, lambda: crashing.restarts == 4, 10, "a restart once the window moved on")
        assert crashing.recent[-1] >= first + policy.window_s  # by the supervisor's own clock
        assert any("restart budget spent (3 restarts in 2 s)" in r.getMessage() for r in caplog.records), \
            [r.getMessage() for r in caplog.records]
        _poll_until(supervisor, lambda: crashing.restarts == 7, 20, "restarts beyond the first budget")
        restarted = [r.getMessage() for r in caplog.records if "crashing restarted" in r.getMessage()]
        assert len(restarted) == 7 and all("exited with code 3" in r.getMessage() for r in caplog.records
                                           if r.getMessage().startswith("crashing exited"))
        assert steady.up and steady.restarts == 0
        state = read_snapshot(tmp_path / "supervisor.json")
        assert state["steady"]["up"] and state["steady"]["restarts"] == 0
        assert state["crashing"]["restarts"] >= 6 and state["crashing"]["window_s"] == 2.0
        assert (tmp_path / "supervisor.json").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "crashing.log").stat().st_mode & 0o777 == 0o600
    finally:
        supervisor.stop(timeout=5)
    assert not steady.up
    assert not (tmp_path / "supervisor.json").exists()


def test_ports_are_chosen_once_and_kept(tmp_path: Path, caplog) -> None:
    import socket

    from citylab.lab import Ports

    first = Ports(tmp_path, "127.0.0.1")
    broker, database = first.get("mosquitto"), first.get("postgres")
    assert broker != database
    assert (tmp_path / "ports.json").stat().st_mode & 0o777 == 0o600
    again = Ports(tmp_path, "127.0.0.1")  # the next `citylab up`
    assert (again.get("mosquitto"), again.get("postgres")) == (broker, database)
    with socket.socket() as taken:  # something else took the broker's port meanwhile
        taken.bind(("127.0.0.1", broker))
        taken.listen()
        moved = Ports(tmp_path, "127.0.0.1").get("mosquitto")
    assert moved != broker and Ports(tmp_path, "127.0.0.1").get("mosquitto") == moved
    assert any("port %d kept in" % broker in r.getMessage() and "taken" in r.getMessage() for r in caplog.records)
