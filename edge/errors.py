"""Errors of the edge agent.

::

    EdgeError (Exception)
     ├── ConfigError      the TOML file is missing, malformed or inconsistent (.path, .key)
     ├── QueueError       the SQLite store-and-forward buffer cannot be opened or written
     └── MqttLinkError    the broker URL or TLS settings cannot be used

Source trouble (a serial port that disappears) is not an error: the agent logs it
and reopens the port with backoff.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EdgeError", "MqttLinkError", "QueueError"]


class EdgeError(Exception):
    """Root of the edge agent's errors."""


class ConfigError(EdgeError):
    """A bad configuration file; the message names the file and the key."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ":".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


class QueueError(EdgeError):
    """The durable pack queue failed (disk full, corrupt file, locked database)."""


class MqttLinkError(EdgeError):
    """The MQTT connection settings cannot be used (bad URL, unreadable CA file)."""
