"""What the MQTT thread hands to the writer: one received message, untouched."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    mid: int
    qos: int
    content_type: str | None  # the MQTT 5 content-type property, when sent
    received_us: int          # UTC microseconds when ingest received it
