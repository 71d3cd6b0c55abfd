"""What the tests of a running `citylab up` wait on (a condition, the lab's JSON files, /health),
and how they stop it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

__all__ = ["health_if", "read_json", "stop_lab", "wait"]


def wait(
    probe: Callable[[], object],
    timeout: float = 30.0,
    what: str = "a condition",
    *,
    detail: Callable[[], object] | None = None,
) -> object:
    """`probe()`'s first true value, asked every 0.1 s for up to `timeout` seconds; on a timeout
    the failure names `what` and carries `detail()` (a log tail, say) when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.0f} s waiting for {what}"
            raise AssertionError(message if detail is None else f"{message}\n{detail()}")
        time.sleep(0.1)


def read_json(path: Path) -> dict | None:
    """The file's JSON, None while it is missing or half written."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def health_if(api_url: str, status: int) -> dict | None:
    """/health's body when it answers `status`."""
    try:
        response = httpx.get(f"{api_url}/health", timeout=15)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == status else None


def stop_lab(lab: subprocess.Popen, *, timeout: float = 60.0) -> None:
    """Ctrl-C, as a user stops it; killed when it does not stop within `timeout`."""
    lab.send_signal(signal.SIGINT)
    try:
        lab.wait(timeout)
    except subprocess.TimeoutExpired:
        lab.kill()
        lab.wait()
