"""Errors of the ingest package.

    IngestError            root; carries the topic and device when known
     └── BrokerError       the MQTT broker refused or dropped us (paho's codes translated)

A pack that cannot be decoded or is not authorised is not an exception that
escapes: it becomes a `storage.packs.DeadLetter` with a reason.
"""

from __future__ import annotations

__all__ = ["BrokerError", "IngestError"]


class IngestError(Exception):
    def __init__(self, message: str, *, topic: str | None = None, device: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic
        self.device = device


class BrokerError(IngestError):
    pass
